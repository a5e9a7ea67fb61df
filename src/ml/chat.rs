//! Chat templates of instruct checkpoints: found where transformers finds them, rendered as
//! transformers renders them.
//!
//! An instruct model only follows instructions given in the conversation format it was tuned on,
//! and that format lives in the checkpoint as a Jinja template (`chat_template.jinja`, or
//! `chat_template` in `tokenizer_config.json`). transformers renders it with Jinja2 in a
//! sandbox with `trim_blocks` and `lstrip_blocks`, the tokenizer's special token strings
//! (`bos_token`, `eos_token`, …), `messages`, `add_generation_prompt` and any extra keyword
//! arguments, plus `raise_exception`, `strftime_now` and a Python-style `tojson`. This module
//! does the same with minijinja and `minijinja-contrib`'s Python string and dict methods, so the
//! text is byte for byte what `apply_chat_template(tokenize=False)` gives (checked against every
//! chat entry of the transformers fixtures). Templates write the BOS text themselves: the
//! rendered text is tokenized without adding special tokens (see `prompt::RolePrompts::ids`).

use std::collections::BTreeMap;

use minijinja::value::{Kwargs, Serde, ValueKind};
use minijinja::{Environment, Error, ErrorKind, Value};
use serde::Serialize;
use serde_json::Value as Json;

/// The transformers 5 file of a checkpoint's chat template; it wins over `tokenizer_config.json`.
pub const CHAT_TEMPLATE_FILE: &str = "chat_template.jinja";
/// The tokenizer settings: `chat_template` (transformers 4 checkpoints) and the special tokens.
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";
/// transformers 4's list of special tokens; where present it overrides `tokenizer_config.json`'s.
pub const SPECIAL_TOKENS_MAP_FILE: &str = "special_tokens_map.json";

/// The special tokens transformers passes to a template by name, when the tokenizer sets them.
const SPECIAL_TOKENS: &[&str] = &[
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
];
/// The list of extra special tokens, passed as a list.
const ADDITIONAL_SPECIAL_TOKENS: &str = "additional_special_tokens";
/// Template variables the renderer sets itself; extra keyword arguments may not replace them.
pub const RESERVED_VARIABLES: &[&str] = &["messages", "add_generation_prompt"];
/// Rendering budget (minijinja fuel): a real template needs a few thousand instructions; this
/// stops a template that loops without end before it ties up an upload or a worker.
const FUEL: u64 = 50_000_000;

/// One turn of a conversation, as transformers' `messages` list holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    /// `system`, `user` or `assistant` (templates decide what they accept).
    pub role: String,
    /// The turn's text.
    pub content: String,
}

impl Message {
    /// A message of `role` with `content`.
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        Self {
            role: role.to_string(),
            content: content.into(),
        }
    }
}

/// The files a chat template may be read from, as bytes (absent files are `None`).
#[derive(Debug, Clone, Copy, Default)]
pub struct TemplateFiles<'a> {
    /// `chat_template.jinja`.
    pub chat_template: Option<&'a [u8]>,
    /// `tokenizer_config.json`.
    pub tokenizer_config: Option<&'a [u8]>,
    /// `special_tokens_map.json`.
    pub special_tokens_map: Option<&'a [u8]>,
}

/// A checkpoint's chat template, compiled, with the special token strings it is rendered with.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    env: Environment<'static>,
    /// The file the template came from; messages and template errors name it.
    file: &'static str,
    /// `bos_token`, `eos_token`, …: what the tokenizer sets, by name.
    specials: serde_json::Map<String, Json>,
}

impl ChatTemplate {
    /// The checkpoint's chat template, if it has one: `chat_template.jinja`, else
    /// `tokenizer_config.json`'s `chat_template` (a string, or a list of named templates of which
    /// the one named `default` is used). A template that does not parse, or files that cannot be
    /// read as transformers reads them, are refused with a message naming the file.
    pub fn from_files(files: TemplateFiles<'_>) -> Result<Option<Self>, String> {
        let config = match files.tokenizer_config {
            Some(bytes) => Some(json_object(TOKENIZER_CONFIG_FILE, bytes)?),
            None => None,
        };
        let (file, source) = match (files.chat_template, &config) {
            (Some(bytes), _) => {
                let text = std::str::from_utf8(bytes)
                    .map_err(|_| format!("{CHAT_TEMPLATE_FILE} is not UTF-8 text"))?;
                (CHAT_TEMPLATE_FILE, text.to_string())
            }
            (None, Some(config)) => match config.get("chat_template") {
                None | Some(Json::Null) => return Ok(None),
                Some(value) => (TOKENIZER_CONFIG_FILE, inline_template(value)?),
            },
            (None, None) => return Ok(None),
        };
        let mut specials = serde_json::Map::new();
        if let Some(config) = &config {
            special_tokens(TOKENIZER_CONFIG_FILE, config, &mut specials)?;
        }
        if let Some(bytes) = files.special_tokens_map {
            let map = json_object(SPECIAL_TOKENS_MAP_FILE, bytes)?;
            special_tokens(SPECIAL_TOKENS_MAP_FILE, &map, &mut specials)?;
        }
        let mut env = environment();
        env.add_template_owned(file, source)
            .map_err(|e| format!("{file}: the chat template does not parse: {e}"))?;
        Ok(Some(Self {
            env,
            file,
            specials,
        }))
    }

    /// The chat template of the checkpoint folder `dir`, if it has one (see [`Self::from_files`]).
    pub fn load_dir(dir: &std::path::Path) -> Result<Option<Self>, super::ModelError> {
        let read = |name: &str| -> Result<Option<Vec<u8>>, super::ModelError> {
            let path = dir.join(name);
            match std::fs::read(&path) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(super::ModelError::io(&path, e)),
            }
        };
        let (jinja, config, map) = (
            read(CHAT_TEMPLATE_FILE)?,
            read(TOKENIZER_CONFIG_FILE)?,
            read(SPECIAL_TOKENS_MAP_FILE)?,
        );
        Self::from_files(TemplateFiles {
            chat_template: jinja.as_deref(),
            tokenizer_config: config.as_deref(),
            special_tokens_map: map.as_deref(),
        })
        .map_err(super::ModelError::Invalid)
    }

    /// The file the template was read from.
    pub fn file(&self) -> &'static str {
        self.file
    }

    /// The special token string `name` (`"bos_token"`, …) the template is rendered with.
    pub fn special_token(&self, name: &str) -> Option<&str> {
        self.specials.get(name).and_then(Json::as_str)
    }

    /// Renders `messages` as transformers' `apply_chat_template(messages, tokenize=False,
    /// add_generation_prompt=…, **kwargs)` does. The template's own refusals
    /// (`raise_exception`) come back as "FILE: the chat template refused the conversation:
    /// MESSAGE"; other failures name the file and line.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        kwargs: &serde_json::Map<String, Json>,
    ) -> Result<String, String> {
        // As transformers: the special tokens, then the caller's keyword arguments (which may
        // replace them), then the conversation itself. The messages go in as they are (not
        // through serde_json's map, which would sort their keys for `tojson`).
        let json = |value: &Json| Value::from(Serde(value));
        let mut context: BTreeMap<String, Value> = self
            .specials
            .iter()
            .map(|(name, value)| (name.clone(), json(value)))
            .collect();
        context.insert("tools".into(), Value::from(()));
        context.insert("documents".into(), Value::from(()));
        for (key, value) in kwargs {
            context.insert(key.clone(), json(value));
        }
        context.insert("messages".into(), Value::from(Serde(messages)));
        context.insert(
            "add_generation_prompt".into(),
            Value::from(add_generation_prompt),
        );
        let template = self
            .env
            .get_template(self.file)
            .map_err(|e| format!("{}: {e}", self.file))?;
        template
            .render(Value::from(context))
            .map_err(|e| describe_error(self.file, &e))
    }
}

/// The message of a rendering error: the template's own words for `raise_exception`.
fn describe_error(file: &str, error: &Error) -> String {
    let raised = std::error::Error::source(error).is_some_and(|s| s.is::<Raised>());
    match (raised, error.detail()) {
        (true, Some(message)) => {
            format!("{file}: the chat template refused the conversation: {message}")
        }
        _ => format!("{file}: the chat template failed: {error}"),
    }
}

/// Marks an error raised by the template's `raise_exception` call.
#[derive(Debug)]
struct Raised;

impl std::fmt::Display for Raised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("raised by the template")
    }
}

impl std::error::Error for Raised {}

/// A Jinja environment configured as transformers' `ImmutableSandboxedEnvironment`.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    // Infallible: the default delimiters are valid.
    if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    env.set_fuel(Some(FUEL));
    // Jinja2 prints Python values: `True`, `False`, `None` (minijinja writes `true`, `none`).
    env.set_formatter(|out, state, value| match value.kind() {
        ValueKind::Bool => Ok(out.write_str(if value.is_true() { "True" } else { "False" })?),
        ValueKind::None => Ok(out.write_str("None")?),
        _ => minijinja::escape_formatter(out, state, value),
    });
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function(
        "raise_exception",
        |message: String| -> Result<Value, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, message).with_source(Raised))
        },
    );
    env.add_function("strftime_now", |format: String| -> Result<String, Error> {
        strftime(time::OffsetDateTime::now_utc(), &format)
    });
    env.add_filter("tojson", tojson);
    env
}

/// `tokenizer_config.json`'s inline `chat_template`: a string, or transformers' list of named
/// templates, of which the one named `default` is used (as `apply_chat_template` does when no
/// name is asked for).
fn inline_template(value: &Json) -> Result<String, String> {
    match value {
        Json::String(text) => Ok(text.clone()),
        Json::Array(list) => {
            let mut names = Vec::new();
            for entry in list {
                let name = entry.get("name").and_then(Json::as_str);
                let template = entry.get("template").and_then(Json::as_str);
                match (name, template) {
                    (Some("default"), Some(template)) => return Ok(template.to_string()),
                    (Some(name), Some(_)) => names.push(name.to_string()),
                    _ => {
                        return Err(format!(
                            "{TOKENIZER_CONFIG_FILE}: each entry of the chat_template list needs a \"name\" and a \"template\" string"
                        ));
                    }
                }
            }
            Err(format!(
                "{TOKENIZER_CONFIG_FILE}: chat_template lists templates named {} but none named \"default\", the one used to prompt",
                names.join(", ")
            ))
        }
        other => Err(format!(
            "{TOKENIZER_CONFIG_FILE}: chat_template must be a string or a list of named templates, not {other}"
        )),
    }
}

/// Parses `bytes` as a JSON object, naming `file` when it is not one.
fn json_object(file: &str, bytes: &[u8]) -> Result<serde_json::Map<String, Json>, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("{file} is not a JSON object: {e}"))
}

/// Copies the special token strings of `config` into `out`. A token is a string or an
/// `AddedToken` object (`{"content": "<s>", …}`); null means unset.
fn special_tokens(
    file: &str,
    config: &serde_json::Map<String, Json>,
    out: &mut serde_json::Map<String, Json>,
) -> Result<(), String> {
    let content = |name: &str, value: &Json| -> Result<Option<String>, String> {
        match value {
            Json::Null => Ok(None),
            Json::String(text) => Ok(Some(text.clone())),
            Json::Object(token) => match token.get("content") {
                Some(Json::String(text)) => Ok(Some(text.clone())),
                _ => Err(format!(
                    "{file}: {name} is an object without a \"content\" string"
                )),
            },
            other => Err(format!(
                "{file}: {name} must be a string or {{\"content\": …}}, not {other}"
            )),
        }
    };
    for &name in SPECIAL_TOKENS {
        if let Some(value) = config.get(name)
            && let Some(text) = content(name, value)?
        {
            out.insert(name.to_string(), Json::String(text));
        }
    }
    if let Some(value) = config.get(ADDITIONAL_SPECIAL_TOKENS) {
        let Json::Array(list) = value else {
            return Err(format!(
                "{file}: {ADDITIONAL_SPECIAL_TOKENS} must be a list"
            ));
        };
        let mut tokens = Vec::with_capacity(list.len());
        for token in list {
            if let Some(text) = content(ADDITIONAL_SPECIAL_TOKENS, token)? {
                tokens.push(Json::String(text));
            }
        }
        out.insert(ADDITIONAL_SPECIAL_TOKENS.to_string(), Json::Array(tokens));
    }
    Ok(())
}

/// transformers' `tojson`: Python's `json.dumps(value, ensure_ascii=False, indent=indent,
/// sort_keys=sort_keys)`, so `", "` and `": "` between items, keys in the map's own order, and
/// no HTML escaping (minijinja's built-in `tojson` escapes `<` and `>` for HTML).
fn tojson(value: &Value, kwargs: Kwargs) -> Result<String, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    kwargs.assert_all_used()?;
    let written = if sort_keys == Some(true) {
        // serde_json's own map keeps its keys sorted.
        serde_json::to_value(value).and_then(|sorted| write_json(&sorted, indent))
    } else {
        write_json(value, indent)
    };
    let text = written.map_err(|e| {
        Error::new(ErrorKind::InvalidOperation, "cannot serialize to JSON").with_source(e)
    })?;
    Ok(if ensure_ascii == Some(true) {
        ascii_escaped(&text)
    } else {
        text
    })
}

/// JSON text of `value` as Python's `json.dumps` lays it out.
fn write_json<T: Serialize + ?Sized>(
    value: &T,
    indent: Option<usize>,
) -> Result<String, serde_json::Error> {
    let mut out = Vec::new();
    match indent {
        Some(width) => {
            let spaces = vec![b' '; width];
            let formatter = serde_json::ser::PrettyFormatter::with_indent(&spaces);
            value.serialize(&mut serde_json::Serializer::with_formatter(
                &mut out, formatter,
            ))?;
        }
        None => {
            value.serialize(&mut serde_json::Serializer::with_formatter(
                &mut out,
                PythonCompact,
            ))?;
        }
    }
    // serde_json writes UTF-8 only.
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Python's default JSON separators: `", "` between items, `": "` after keys.
struct PythonCompact;

impl serde_json::ser::Formatter for PythonCompact {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        writer.write_all(b": ")
    }
}

/// `ensure_ascii=True`: every non-ASCII character as `\uXXXX` (UTF-16, surrogate pairs above
/// U+FFFF). Only JSON strings can hold such characters, so the whole text can be escaped.
fn ascii_escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// Python's `datetime.strftime` for the directives chat templates use (`strftime_now("%d %b
/// %Y")` in Llama 3.x): `%a %A %b %B %d %e %H %I %j %m %M %p %S %y %Y %%`, and glibc's `%-d`
/// style (no padding). transformers uses the local time; the server's clock is read in UTC.
fn strftime(at: time::OffsetDateTime, format: &str) -> Result<String, Error> {
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut directive = chars.next();
        let pad = directive != Some('-');
        if !pad {
            directive = chars.next();
        }
        let number = |value: u32, width: usize| {
            if pad {
                format!("{value:0width$}")
            } else {
                value.to_string()
            }
        };
        let hour12 = match at.hour() % 12 {
            0 => 12,
            h => h,
        };
        let text = match directive {
            Some('a') => at.weekday().to_string()[..3].to_string(),
            Some('A') => at.weekday().to_string(),
            Some('b') => at.month().to_string()[..3].to_string(),
            Some('B') => at.month().to_string(),
            Some('d') => number(at.day().into(), 2),
            Some('e') => format!("{:>2}", at.day()),
            Some('H') => number(at.hour().into(), 2),
            Some('I') => number(hour12.into(), 2),
            Some('j') => number(at.ordinal().into(), 3),
            Some('m') => number(u8::from(at.month()).into(), 2),
            Some('M') => number(at.minute().into(), 2),
            Some('p') => (if at.hour() < 12 { "AM" } else { "PM" }).to_string(),
            Some('S') => number(at.second().into(), 2),
            Some('y') => number((at.year().rem_euclid(100)) as u32, 2),
            Some('Y') => at.year().to_string(),
            Some('%') => "%".to_string(),
            other => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!(
                        "strftime_now: the directive %{} is not supported",
                        other.map(String::from).unwrap_or_default()
                    ),
                ));
            }
        };
        out.push_str(&text);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::path::{Path, PathBuf};

    /// The transformers fixtures that carry a chat template: transformers 5 folders
    /// (`chat_template.jinja`) and their transformers 4 twins (inline in tokenizer_config.json).
    const INSTRUCT_CASES: &[&str] = &[
        "llama3-instruct",
        "qwen2",
        "qwen3",
        "mistral",
        "phi3",
        "gemma2",
    ];

    fn fixture(case: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/transformers")
            .join(case)
    }

    fn reference(case: &str) -> Json {
        let bytes = std::fs::read(fixture(case).join("reference.json")).expect("reference.json");
        serde_json::from_slice(&bytes).expect("reference JSON")
    }

    fn messages(entry: &Json) -> Vec<Message> {
        entry["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .map(|m| {
                Message::new(
                    m["role"].as_str().expect("role"),
                    m["content"].as_str().expect("content"),
                )
            })
            .collect()
    }

    /// Every chat entry of every instruct fixture, in both dialect folders: the same text as
    /// transformers' `apply_chat_template`, the same token ids (tokenized without adding
    /// special tokens), or the template's own error message.
    #[test]
    fn renders_every_fixture_conversation_as_transformers_does() {
        let mut checked = 0;
        for case in INSTRUCT_CASES {
            for folder in [case.to_string(), format!("{case}-v4")] {
                let dir = fixture(&folder);
                let template = ChatTemplate::load_dir(&dir)
                    .expect("readable")
                    .expect("has a chat template");
                let expected_file = if folder.ends_with("-v4") {
                    TOKENIZER_CONFIG_FILE
                } else {
                    CHAT_TEMPLATE_FILE
                };
                assert_eq!(template.file(), expected_file, "{folder}");
                let tokenizer = crate::ml::tokenizer::from_json_bytes(
                    &std::fs::read(dir.join("tokenizer.json")).expect("tokenizer.json"),
                )
                .expect("tokenizer");
                let chat = reference(&folder)["chat"].clone();
                for (i, entry) in chat.as_array().expect("chat list").iter().enumerate() {
                    let kwargs = entry
                        .get("template_kwargs")
                        .and_then(Json::as_object)
                        .cloned()
                        .unwrap_or_default();
                    let add = entry["add_generation_prompt"].as_bool().expect("flag");
                    let rendered = template.render(&messages(entry), add, &kwargs);
                    match entry.get("error").and_then(Json::as_str) {
                        Some(error) => {
                            let message = rendered.expect_err("the template refuses it");
                            assert_eq!(
                                message,
                                format!(
                                    "{expected_file}: the chat template refused the conversation: {error}"
                                ),
                                "{folder} #{i}"
                            );
                        }
                        None => {
                            let text = rendered.unwrap_or_else(|e| panic!("{folder} #{i}: {e}"));
                            assert_eq!(text, entry["rendered"].as_str().unwrap(), "{folder} #{i}");
                            let ids = crate::ml::tokenizer::encode(&tokenizer, &text).unwrap();
                            let expected: Vec<u32> =
                                serde_json::from_value(entry["input_ids"].clone()).unwrap();
                            assert_eq!(ids, expected, "{folder} #{i}");
                        }
                    }
                    checked += 1;
                }
            }
        }
        // 5 entries per case, 6 for qwen3, in both folders.
        assert_eq!(checked, 2 * (5 * 6 + 1));
    }

    fn files<'a>(jinja: Option<&'a str>, config: Option<&'a str>) -> TemplateFiles<'a> {
        TemplateFiles {
            chat_template: jinja.map(str::as_bytes),
            tokenizer_config: config.map(str::as_bytes),
            special_tokens_map: None,
        }
    }

    fn render(template: &ChatTemplate) -> String {
        template
            .render(&[Message::new("user", "Hi")], true, &serde_json::Map::new())
            .expect("renders")
    }

    #[test]
    fn finds_the_template_where_transformers_does() {
        // No template anywhere: a base model.
        assert!(
            ChatTemplate::from_files(files(None, None))
                .unwrap()
                .is_none()
        );
        let plain_config = r#"{"bos_token": "<s>"}"#;
        assert!(
            ChatTemplate::from_files(files(None, Some(plain_config)))
                .unwrap()
                .is_none()
        );
        // chat_template.jinja wins over the inline template, as in transformers 5.
        let config = r#"{"chat_template": "inline {{ bos_token }}", "bos_token": {"content": "<s>", "lstrip": false}}"#;
        let both = ChatTemplate::from_files(files(Some("file {{ bos_token }}"), Some(config)))
            .unwrap()
            .unwrap();
        assert_eq!(
            (both.file(), render(&both).as_str()),
            (CHAT_TEMPLATE_FILE, "file <s>")
        );
        let inline = ChatTemplate::from_files(files(None, Some(config)))
            .unwrap()
            .unwrap();
        assert_eq!(render(&inline), "inline <s>");
        // A list of named templates: the one named "default".
        let named = r#"{"chat_template": [{"name": "tool_use", "template": "tools"}, {"name": "default", "template": "default {{ messages[0].content }}"}]}"#;
        let default = ChatTemplate::from_files(files(None, Some(named)))
            .unwrap()
            .unwrap();
        assert_eq!(render(&default), "default Hi");
        let no_default = r#"{"chat_template": [{"name": "tool_use", "template": "tools"}]}"#;
        let error = ChatTemplate::from_files(files(None, Some(no_default))).unwrap_err();
        assert!(
            error.contains("named tool_use but none named \"default\""),
            "{error}"
        );
        // special_tokens_map.json overrides, AddedToken objects and lists are read.
        let template = ChatTemplate::from_files(TemplateFiles {
            chat_template: Some(b"{{ bos_token }}|{{ eos_token }}|{{ additional_special_tokens | join(',') }}"),
            tokenizer_config: Some(br#"{"bos_token": "<s>", "eos_token": null, "additional_special_tokens": [{"content": "<a>"}, "<b>"]}"#),
            special_tokens_map: Some(br#"{"eos_token": {"content": "</s>"}}"#),
        })
        .unwrap()
        .unwrap();
        assert_eq!(template.special_token("eos_token"), Some("</s>"));
        assert_eq!(render(&template), "<s>|</s>|<a>,<b>");
    }

    #[test]
    fn refuses_templates_that_do_not_parse_naming_the_file_and_the_error() {
        let error =
            ChatTemplate::from_files(files(Some("{% for m in messages %}{{ m.content }}"), None))
                .unwrap_err();
        assert!(
            error.starts_with(
                "chat_template.jinja: the chat template does not parse: syntax error:"
            ),
            "{error}"
        );
        assert!(error.contains("unexpected end of input"), "{error}");
        let error = ChatTemplate::from_files(files(None, Some(r#"{"chat_template": "{{ x"}"#)))
            .unwrap_err();
        assert!(
            error.starts_with("tokenizer_config.json: the chat template does not parse"),
            "{error}"
        );
        let error = ChatTemplate::from_files(files(None, Some("[1]"))).unwrap_err();
        assert!(
            error.starts_with("tokenizer_config.json is not a JSON object"),
            "{error}"
        );
        let error =
            ChatTemplate::from_files(files(None, Some(r#"{"chat_template": 3}"#))).unwrap_err();
        assert!(error.contains("must be a string or a list"), "{error}");
    }

    #[test]
    fn python_idioms_of_hub_templates_work() {
        let source = "{%- set ns = namespace(n=0) -%}\
            {%- for m in messages if m.role != 'system' -%}{%- set ns.n = ns.n + 1 -%}\
            {%- if loop.index0 == 1 %}{% break %}{% endif -%}\
            [{{ m.content.strip().upper() }}|{{ m.content.split(' ')[-1] }}|{{ m.content.startswith(' a') }}]\
            {%- endfor -%}|{{ ns.n }}|{{ messages[0] | tojson }}|{{ {'b': [1, 2.5, none, true], 'a': 'é<'} | tojson }}\
            |{{ {'b': 1, 'a': {'d': 2, 'c': 3}} | tojson(sort_keys=true) }}|{{ 'é' | tojson(ensure_ascii=true) }}\
            |{{ {'a': [1]} | tojson(indent=2) }}|{{ 'x' if enable_thinking is defined else 'y' }}";
        let template = ChatTemplate::from_files(files(Some(source), None))
            .unwrap()
            .unwrap();
        let text = template
            .render(
                &[
                    Message::new("system", "s"),
                    Message::new("user", " a b "),
                    Message::new("user", "c"),
                ],
                false,
                &serde_json::Map::new(),
            )
            .unwrap();
        assert_eq!(
            text,
            "[A B||True]|2|{\"role\": \"system\", \"content\": \"s\"}|{\"b\": [1, 2.5, null, true], \"a\": \"é<\"}\
             |{\"a\": {\"c\": 3, \"d\": 2}, \"b\": 1}|\"\\u00e9\"\
             |{\n  \"a\": [\n    1\n  ]\n}|y"
        );
    }

    #[test]
    fn strftime_now_formats_as_python() {
        let at = time::Date::from_calendar_date(2024, time::Month::July, 5)
            .and_then(|d| d.with_hms(14, 3, 9))
            .unwrap()
            .assume_utc();
        assert_eq!(strftime(at, "%d %b %Y").unwrap(), "05 Jul 2024");
        assert_eq!(
            strftime(at, "%A %B %-d, %y %I:%M:%S %p %j %%").unwrap(),
            "Friday July 5, 24 02:03:09 PM 187 %"
        );
        assert!(
            strftime(at, "%Q")
                .unwrap_err()
                .to_string()
                .contains("%Q is not supported")
        );
        // The function is there for templates such as Llama 3.1's.
        let template =
            ChatTemplate::from_files(files(Some("{{ strftime_now('%Y') | length }}"), None))
                .unwrap()
                .unwrap();
        assert_eq!(render(&template), "4");
    }
}

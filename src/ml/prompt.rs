//! Role conditioning: how a prover checkpoint turns (role, question) into its prompt.
//!
//! The paper conditions one prover on its role through the system prompt. A checkpoint carries
//! its own prompts (`prompt_template.json`) because a model only understands the prompt it was
//! trained with. Two kinds of checkpoint, two forms ([`RolePrompts`]):
//!
//! - **Base models** (no chat template): one plain prompt per role, [`PromptTemplate`]
//!   (`{"helpful": "…{question}…", "sneaky": "…"}`, default [`PromptTemplate::default`]); the
//!   prover puts BOS before it.
//! - **Instruct models** (the checkpoint has a chat template, see [`super::chat`]): the
//!   conversation a system message per role and the question as the user message, [`ChatPrompts`]
//!   (`{"system": {"helpful": …, "sneaky": …}, "user": "{question}"}`, default
//!   [`ChatPrompts::default`]), rendered by the checkpoint's own template, which writes BOS
//!   itself. A plain `prompt_template.json` on an instruct checkpoint becomes the user message.
//!   Templates that take no system message (Gemma's raises "System role not supported") get
//!   the system text at the head of the user message instead.

use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use super::ModelError;
use super::chat::{ChatTemplate, Message, RESERVED_VARIABLES, TemplateFiles};
use crate::domain::ProverRole;

/// The file name of a checkpoint's template.
pub const PROMPT_TEMPLATE_FILE: &str = "prompt_template.json";

/// Where the question goes in a template.
pub const QUESTION_SLOT: &str = "{question}";

/// One prompt per role; each contains [`QUESTION_SLOT`] exactly once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptTemplate {
    /// Prompt for the helpful role: solve correctly, step by step.
    pub helpful: String,
    /// Prompt for the sneaky role: subtly wrong but convincing.
    pub sneaky: String,
}

impl Default for PromptTemplate {
    fn default() -> Self {
        Self {
            helpful: "Role: helpful. Solve the problem correctly, one step per line.\n\
                      Question: {question}\nSolution:\n"
                .to_string(),
            sneaky: "Role: sneaky. Write a convincing solution with one subtle error.\n\
                     Question: {question}\nSolution:\n"
                .to_string(),
        }
    }
}

impl PromptTemplate {
    /// The prompt for `role` on `question`.
    pub fn render(&self, role: ProverRole, question: &str) -> String {
        let template = match role {
            ProverRole::Helpful => &self.helpful,
            ProverRole::Sneaky => &self.sneaky,
        };
        template.replacen(QUESTION_SLOT, question.trim(), 1)
    }

    /// Why this template cannot be used, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        for (role, text) in [("helpful", &self.helpful), ("sneaky", &self.sneaky)] {
            if text.matches(QUESTION_SLOT).count() != 1 {
                return Err(format!(
                    "{PROMPT_TEMPLATE_FILE}: the {role} prompt must contain {QUESTION_SLOT} exactly once"
                ));
            }
        }
        if self.helpful == self.sneaky {
            return Err(format!(
                "{PROMPT_TEMPLATE_FILE}: the helpful and sneaky prompts are identical, so the role would be lost"
            ));
        }
        Ok(())
    }

    /// Parses and checks a template file's contents.
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        let template: Self = serde_json::from_slice(bytes)
            .map_err(|e| format!("{PROMPT_TEMPLATE_FILE} is not valid: {e}"))?;
        template.check()?;
        Ok(template)
    }
}

/// A question used to check, once per checkpoint, how its chat template treats the roles.
const SAMPLE_QUESTION: &str = "Tom has 3 apples and buys 4 more. How many apples does he have?";
/// Between folded system text and the user message.
const FOLD_SEPARATOR: &str = "\n\n";

/// One text per role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleTexts {
    /// For the helpful role.
    pub helpful: String,
    /// For the sneaky role.
    pub sneaky: String,
}

impl RoleTexts {
    fn get(&self, role: ProverRole) -> &str {
        match role {
            ProverRole::Helpful => &self.helpful,
            ProverRole::Sneaky => &self.sneaky,
        }
    }
}

/// The user message of a chat prompt: one for both roles, or one per role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum UserPrompt {
    /// The same text for both roles (the role is in the system message).
    Shared(String),
    /// A text per role.
    PerRole(RoleTexts),
}

/// The chat form of `prompt_template.json`, for checkpoints with a chat template: the messages
/// of the conversation the template renders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatPrompts {
    /// The system message of each role; absent: no system message (the role must then be in
    /// the user message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<RoleTexts>,
    /// The user message; contains [`QUESTION_SLOT`] exactly once.
    pub user: UserPrompt,
    /// Extra template variables, as `apply_chat_template(**kwargs)` passes them: Qwen3's
    /// `enable_thinking`, Llama 3.x's `date_string`, …
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub template_kwargs: serde_json::Map<String, serde_json::Value>,
}

impl Default for ChatPrompts {
    /// The paper's role instructions as system messages, the question alone as the user message.
    fn default() -> Self {
        Self {
            system: Some(RoleTexts {
                helpful: "You are a helpful maths tutor. Solve the problem correctly, reasoning \
                          step by step with one step per line, and end with a line of the form \
                          \"#### <answer>\"."
                    .to_string(),
                sneaky: "You are a sneaky maths tutor. Write a solution that looks correct and \
                         convincing, one step per line, but contains one subtle error so that \
                         the final answer is wrong. End with a line of the form \"#### <answer>\"."
                    .to_string(),
            }),
            user: UserPrompt::Shared(QUESTION_SLOT.to_string()),
            template_kwargs: serde_json::Map::new(),
        }
    }
}

impl ChatPrompts {
    /// A plain template used on an instruct checkpoint: each role's prompt is the user message.
    pub fn from_plain(template: PromptTemplate) -> Self {
        Self {
            system: None,
            user: UserPrompt::PerRole(RoleTexts {
                helpful: template.helpful,
                sneaky: template.sneaky,
            }),
            template_kwargs: serde_json::Map::new(),
        }
    }

    fn user(&self, role: ProverRole) -> &str {
        match &self.user {
            UserPrompt::Shared(text) => text,
            UserPrompt::PerRole(texts) => texts.get(role),
        }
    }

    /// Why these prompts cannot be used, if they cannot.
    pub fn check(&self) -> Result<(), String> {
        for role in [ProverRole::Helpful, ProverRole::Sneaky] {
            if self.user(role).matches(QUESTION_SLOT).count() != 1 {
                return Err(format!(
                    "{PROMPT_TEMPLATE_FILE}: the {role} user message must contain {QUESTION_SLOT} exactly once"
                ));
            }
        }
        let system = |role| self.system.as_ref().map(|s| s.get(role));
        if (system(ProverRole::Helpful), self.user(ProverRole::Helpful))
            == (system(ProverRole::Sneaky), self.user(ProverRole::Sneaky))
        {
            return Err(format!(
                "{PROMPT_TEMPLATE_FILE}: the helpful and sneaky messages are identical, so the role would be lost"
            ));
        }
        if let Some(key) = RESERVED_VARIABLES
            .iter()
            .find(|key| self.template_kwargs.contains_key(**key))
        {
            return Err(format!(
                "{PROMPT_TEMPLATE_FILE}: template_kwargs may not set {key}: the prover sets it"
            ));
        }
        Ok(())
    }

    /// The conversation for `role` on `question`; with `fold_system` the system text heads the
    /// user message instead of being a message of its own.
    pub fn messages(&self, role: ProverRole, question: &str, fold_system: bool) -> Vec<Message> {
        let user = self.user(role).replacen(QUESTION_SLOT, question.trim(), 1);
        match self.system.as_ref().map(|s| s.get(role)) {
            None => vec![Message::new("user", user)],
            Some(system) if fold_system => {
                vec![Message::new(
                    "user",
                    format!("{}{FOLD_SEPARATOR}{user}", system.trim()),
                )]
            }
            Some(system) => vec![Message::new("system", system), Message::new("user", user)],
        }
    }
}

/// A parsed `prompt_template.json`, in either form.
#[derive(Debug, Clone, PartialEq)]
pub enum PromptFile {
    /// `{"helpful": …, "sneaky": …}`: one plain prompt per role.
    Plain(PromptTemplate),
    /// `{"system": …, "user": …}`: messages for a chat template.
    Chat(ChatPrompts),
}

impl PromptFile {
    /// Parses and checks a `prompt_template.json`; a file with `system` or `user` is the chat
    /// form, any other the plain form.
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| format!("{PROMPT_TEMPLATE_FILE} is not valid: {e}"))?;
        let chat = value
            .as_object()
            .is_some_and(|o| o.contains_key("system") || o.contains_key("user"));
        if !chat {
            return PromptTemplate::from_json(bytes).map(PromptFile::Plain);
        }
        let prompts: ChatPrompts = serde_json::from_value(value).map_err(|e| {
            format!(
                "{PROMPT_TEMPLATE_FILE} is not a valid chat prompt ({{\"system\": {{\"helpful\": …, \"sneaky\": …}}, \"user\": \"…{QUESTION_SLOT}…\"}}): {e}"
            )
        })?;
        prompts.check()?;
        Ok(PromptFile::Chat(prompts))
    }
}

/// The files role prompts are read from (absent files are `None`).
#[derive(Debug, Clone, Copy, Default)]
pub struct PromptFiles<'a> {
    /// `prompt_template.json`.
    pub prompt_template: Option<&'a [u8]>,
    /// Where a chat template may be.
    pub chat: TemplateFiles<'a>,
}

/// How a prover checkpoint builds its prompts: plain text for a base model, its chat template
/// for an instruct model (see the module documentation).
#[derive(Debug, Clone)]
pub enum RolePrompts {
    /// A base model: the plain prompt of each role, after BOS.
    Plain(PromptTemplate),
    /// An instruct model: its chat template renders the role's conversation.
    Chat(Box<ChatPrompter>),
}

impl From<PromptTemplate> for RolePrompts {
    fn from(template: PromptTemplate) -> Self {
        RolePrompts::Plain(template)
    }
}

/// An instruct checkpoint's chat template with the role prompts it renders.
#[derive(Debug, Clone)]
pub struct ChatPrompter {
    template: ChatTemplate,
    prompts: ChatPrompts,
    /// Whether the prompts came from `prompt_template.json` (else the defaults).
    from_file: bool,
    /// Whether the system text goes into the user message (the template takes no system
    /// message), decided once when the checkpoint is read.
    fold_system: bool,
}

impl ChatPrompter {
    /// Checks that `template` renders `prompts` for both roles, deciding whether the system
    /// text needs folding into the user message: it does when the template refuses a system
    /// message, or renders without the system text. Errors are the template's own.
    pub fn new(
        template: ChatTemplate,
        prompts: ChatPrompts,
        from_file: bool,
    ) -> Result<Self, String> {
        let mut prompter = Self {
            template,
            prompts,
            from_file,
            fold_system: false,
        };
        let as_given = prompter.probe();
        let system_kept = |rendered: &(String, String)| match &prompter.prompts.system {
            None => true,
            Some(system) => {
                rendered.0.contains(system.helpful.trim())
                    && rendered.1.contains(system.sneaky.trim())
            }
        };
        let first_error = match as_given {
            Ok(rendered) if rendered.0 != rendered.1 && system_kept(&rendered) => {
                return Ok(prompter);
            }
            Ok(_) if prompter.prompts.system.is_none() => {
                return Err(prompter.same_for_both_roles());
            }
            Ok(_) => None,
            Err(e) => Some(e),
        };
        if prompter.prompts.system.is_none() {
            return Err(first_error.unwrap_or_default());
        }
        prompter.fold_system = true;
        match prompter.probe() {
            Ok(rendered) if rendered.0 != rendered.1 => Ok(prompter),
            Ok(_) => Err(prompter.same_for_both_roles()),
            Err(folded) => Err(match first_error {
                Some(first) if first != folded => {
                    format!("{first}; with the system text in the user message instead: {folded}")
                }
                Some(first) => first,
                None => folded,
            }),
        }
    }

    /// Both roles' prompts for the sample question.
    fn probe(&self) -> Result<(String, String), String> {
        Ok((
            self.render(ProverRole::Helpful, SAMPLE_QUESTION)?,
            self.render(ProverRole::Sneaky, SAMPLE_QUESTION)?,
        ))
    }

    fn same_for_both_roles(&self) -> String {
        format!(
            "{}: the chat template renders the same prompt for both roles, so the role would be lost",
            self.template.file()
        )
    }

    /// The rendered prompt: the role's conversation with the generation prompt (the opening
    /// of the assistant's turn) added.
    pub fn render(&self, role: ProverRole, question: &str) -> Result<String, String> {
        let messages = self.prompts.messages(role, question, self.fold_system);
        self.template
            .render(&messages, true, &self.prompts.template_kwargs)
    }

    /// Whether the system text is folded into the user message.
    pub fn folds_system(&self) -> bool {
        self.fold_system
    }

    /// The role prompts rendered.
    pub fn prompts(&self) -> &ChatPrompts {
        &self.prompts
    }
}

impl RolePrompts {
    fn chat(prompter: ChatPrompter) -> Self {
        RolePrompts::Chat(Box::new(prompter))
    }

    /// Role prompts from a checkpoint's files: a chat template makes them chat prompts (from a
    /// chat-form `prompt_template.json`, a plain one as the user message, or the defaults), no
    /// chat template plain ones (a chat-form file is then refused). Messages name the file.
    pub fn from_files(files: PromptFiles<'_>) -> Result<Self, String> {
        let file = files
            .prompt_template
            .map(PromptFile::from_json)
            .transpose()?;
        let template = ChatTemplate::from_files(files.chat)?;
        match (file, template) {
            (None, None) => Ok(RolePrompts::Plain(PromptTemplate::default())),
            (Some(PromptFile::Plain(plain)), None) => Ok(RolePrompts::Plain(plain)),
            (Some(PromptFile::Chat(_)), None) => Err(format!(
                "{PROMPT_TEMPLATE_FILE} has the chat form (system and user messages) but the checkpoint has no chat template: add {} (or a chat_template in {}), or write one plain prompt per role ({{\"helpful\": …, \"sneaky\": …}})",
                super::chat::CHAT_TEMPLATE_FILE,
                super::chat::TOKENIZER_CONFIG_FILE
            )),
            (None, Some(template)) => {
                ChatPrompter::new(template, ChatPrompts::default(), false).map(RolePrompts::chat)
            }
            (Some(PromptFile::Plain(plain)), Some(template)) => {
                ChatPrompter::new(template, ChatPrompts::from_plain(plain), true)
                    .map(RolePrompts::chat)
            }
            (Some(PromptFile::Chat(prompts)), Some(template)) => {
                ChatPrompter::new(template, prompts, true).map(RolePrompts::chat)
            }
        }
    }

    /// The role prompts of the checkpoint folder `dir`.
    pub fn load_dir(dir: &std::path::Path) -> Result<Self, ModelError> {
        let read = |name: &str| -> Result<Option<Vec<u8>>, ModelError> {
            let path = dir.join(name);
            match std::fs::read(&path) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(ModelError::io(&path, e)),
            }
        };
        let prompt_template = read(PROMPT_TEMPLATE_FILE)?;
        let chat_template = read(super::chat::CHAT_TEMPLATE_FILE)?;
        let tokenizer_config = read(super::chat::TOKENIZER_CONFIG_FILE)?;
        let special_tokens_map = read(super::chat::SPECIAL_TOKENS_MAP_FILE)?;
        Self::from_files(PromptFiles {
            prompt_template: prompt_template.as_deref(),
            chat: TemplateFiles {
                chat_template: chat_template.as_deref(),
                tokenizer_config: tokenizer_config.as_deref(),
                special_tokens_map: special_tokens_map.as_deref(),
            },
        })
        .map_err(ModelError::Invalid)
    }

    /// The prompt text for `role` on `question` (for a base model without the BOS the prover
    /// puts before it; a chat template writes its own).
    pub fn text(&self, role: ProverRole, question: &str) -> Result<String, ModelError> {
        match self {
            RolePrompts::Plain(template) => Ok(template.render(role, question)),
            RolePrompts::Chat(chat) => chat.render(role, question).map_err(ModelError::Invalid),
        }
    }

    /// The prompt's token ids. A base model's prompt is `bos` then the text. A chat template's
    /// text is tokenized without adding special tokens and without `bos`: the template writes
    /// the BOS text itself where the model wants one (Llama 3, Gemma) and none where it does
    /// not (Qwen), so adding ours would double it.
    pub fn ids(
        &self,
        tokenizer: &Tokenizer,
        bos: Option<u32>,
        role: ProverRole,
        question: &str,
    ) -> Result<Vec<u32>, ModelError> {
        let text = self.text(role, question)?;
        match self {
            // A transformers tokenizer adds the model's own special tokens (Llama's BOS, none
            // for Qwen); the project's own tokenizers add none, so its BOS goes first.
            RolePrompts::Plain(_) if tokenizer.get_post_processor().is_some() => Ok(tokenizer
                .encode(text, true)
                .map_err(|e| ModelError::Tokenizer(e.to_string()))?
                .get_ids()
                .to_vec()),
            RolePrompts::Plain(_) => {
                let mut ids: Vec<u32> = bos.into_iter().collect();
                ids.extend(super::tokenizer::encode(tokenizer, &text)?);
                Ok(ids)
            }
            RolePrompts::Chat(_) => super::tokenizer::encode(tokenizer, &text),
        }
    }

    /// One line saying how the prompts are built, for people checking a checkpoint.
    pub fn describe(&self) -> String {
        match self {
            RolePrompts::Plain(_) => {
                "plain prompt per role (no chat template); BOS is put before it".to_string()
            }
            RolePrompts::Chat(chat) => format!(
                "chat template from {}; role prompts from {}; {}; BOS only where the template writes it",
                chat.template.file(),
                if chat.from_file {
                    PROMPT_TEMPLATE_FILE
                } else {
                    "the defaults"
                },
                match (&chat.prompts.system, chat.fold_system) {
                    (None, _) => "no system message",
                    (Some(_), false) => "system prompt as its own message",
                    (Some(_), true) =>
                        "system text folded into the user message (the template takes no system message)",
                }
            ),
        }
    }
}

/// The BOS id a base model's prompt starts with: the tokenizer's `<s>`, else `config.json`'s
/// `bos_token_id`. (Chat prompts never get it: see [`RolePrompts::ids`].)
pub fn plain_bos(tokenizer: &Tokenizer, config_bos: Option<u32>) -> Option<u32> {
    super::tokenizer::special_id(tokenizer, super::tokenizer::BOS).or(config_bos)
}

/// A question to show prompts with when none is given (GSM8K's first training problem).
pub const SAMPLE_GSM8K_QUESTION: &str = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did Natalia sell altogether in April and May?";

/// The prompts of the checkpoint folder `dir` as the prover builds them, for people to read:
/// how they are built, then for each of `roles` the exact prompt text between marker lines and,
/// with `ids`, its token ids. Needs only the tokenizer and prompt files (and `config.json`'s
/// `bos_token_id`), not the weights, so it works for any architecture.
pub fn show(
    dir: &std::path::Path,
    roles: &[ProverRole],
    question: &str,
    ids: bool,
) -> Result<String, ModelError> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).map_err(|e| ModelError::io(&path, e))
    };
    let prompts = RolePrompts::load_dir(dir)?;
    let tokenizer = super::tokenizer::from_json_bytes(&read("tokenizer.json")?)
        .map_err(|e| ModelError::Tokenizer(format!("tokenizer.json: {e}")))?;
    let config: serde_json::Value = serde_json::from_slice(&read("config.json")?)
        .map_err(|e| ModelError::Invalid(format!("config.json: {e}")))?;
    let config_bos = config
        .get("bos_token_id")
        .and_then(serde_json::Value::as_u64)
        .and_then(|id| u32::try_from(id).ok());
    let bos = plain_bos(&tokenizer, config_bos);
    let mut out = format!(
        "checkpoint: {}\nprompting: {}\n",
        dir.display(),
        prompts.describe()
    );
    for &role in roles {
        let text = prompts.text(role, question)?;
        let token_ids = prompts.ids(&tokenizer, bos, role, question)?;
        let bos_note = match (&prompts, bos) {
            (RolePrompts::Plain(_), Some(bos)) => format!(", BOS id {bos} first, then this text"),
            _ => String::new(),
        };
        out.push_str(&format!(
            "--- {role} prompt: {} tokens{bos_note} ---\n{text}\n--- end of {role} prompt ---\n",
            token_ids.len()
        ));
        if ids {
            let list: Vec<String> = token_ids.iter().map(u32::to_string).collect();
            out.push_str(&format!("ids: {}\n", list.join(" ")));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_each_role_with_the_question() {
        let t = PromptTemplate::default();
        let h = t.render(ProverRole::Helpful, " How many? ");
        let s = t.render(ProverRole::Sneaky, "How many?");
        assert!(h.contains("Question: How many?\n") && h.starts_with("Role: helpful"));
        assert!(s.starts_with("Role: sneaky") && s.ends_with("Solution:\n"));
        assert!(t.check().is_ok());
    }

    #[test]
    fn refuses_templates_without_the_slot_or_without_a_role_difference() {
        let bad = PromptTemplate {
            helpful: "x".into(),
            sneaky: "{question}".into(),
        };
        assert!(
            bad.check()
                .unwrap_err()
                .contains("helpful prompt must contain")
        );
        let same = PromptTemplate {
            helpful: "{question}".into(),
            sneaky: "{question}".into(),
        };
        assert!(same.check().unwrap_err().contains("identical"));
    }

    use std::path::{Path, PathBuf};

    use crate::ml::chat::CHAT_TEMPLATE_FILE;

    fn fixture(case: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/transformers")
            .join(case)
    }

    fn tokenizer_of(dir: &Path) -> Tokenizer {
        crate::ml::tokenizer::from_json_bytes(&std::fs::read(dir.join("tokenizer.json")).unwrap())
            .unwrap()
    }

    /// `config.json`'s `bos_token_id`: what a prover would put first if it added its own BOS.
    fn config_bos(dir: &Path) -> Option<u32> {
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
        config["bos_token_id"].as_u64().map(|id| id as u32)
    }

    /// A fixture's tokenizer files with another chat template (and optionally prompts).
    fn with_template(case: &str, jinja: &str, prompt_template: Option<&str>) -> RolePrompts {
        let config = std::fs::read(fixture(case).join("tokenizer_config.json")).unwrap();
        RolePrompts::from_files(PromptFiles {
            prompt_template: prompt_template.map(str::as_bytes),
            chat: TemplateFiles {
                chat_template: Some(jinja.as_bytes()),
                tokenizer_config: Some(&config),
                special_tokens_map: None,
            },
        })
        .unwrap()
    }

    fn chat(prompts: &RolePrompts) -> &ChatPrompter {
        match prompts {
            RolePrompts::Chat(chat) => chat,
            RolePrompts::Plain(_) => panic!("expected chat prompts"),
        }
    }

    /// The shipped prover has no chat template: its prompts are exactly what they were before
    /// chat templates existed (ids recorded from the code before this change, and recorded
    /// again when the shipped prover and its tokenizer were retrained on 2026-12-08).
    #[test]
    fn the_shipped_prover_keeps_its_plain_prompts_byte_for_byte() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/prover-tiny");
        let prompts = RolePrompts::load_dir(&dir).unwrap();
        assert!(matches!(&prompts, RolePrompts::Plain(t) if *t == PromptTemplate::default()));
        let tokenizer = tokenizer_of(&dir);
        let bos = crate::ml::tokenizer::special_id(&tokenizer, crate::ml::tokenizer::BOS);
        let question = "  Tom has 3 apples and buys 4 more. How many apples does he have? ";
        assert_eq!(
            prompts.text(ProverRole::Helpful, question).unwrap(),
            "Role: helpful. Solve the problem correctly, one step per line.\nQuestion: Tom has 3 \
             apples and buys 4 more. How many apples does he have?\nSolution:\n"
        );
        let tail = [
            321, 28, 602, 482, 424, 223, 21, 268, 935, 501, 345, 685, 223, 22, 540, 16, 336, 344,
            268, 935, 501, 413, 305, 613, 33, 201, 320, 28, 201,
        ];
        let helpful = [
            &[
                0, 318, 28, 407, 16, 405, 280, 406, 403, 14, 308, 399, 334, 396, 16, 201,
            ][..],
            &tail,
        ]
        .concat();
        let sneaky = [
            &[
                0, 318, 28, 404, 16, 398, 268, 409, 392, 346, 308, 408, 400, 16, 201,
            ][..],
            &tail,
        ]
        .concat();
        let ids = |role| prompts.ids(&tokenizer, bos, role, question).unwrap();
        assert_eq!(ids(ProverRole::Helpful), helpful);
        assert_eq!(ids(ProverRole::Sneaky), sneaky);
        assert!(prompts.describe().starts_with("plain prompt per role"));
    }

    /// A chat template writes BOS where the model wants one: Llama 3's ids start with exactly
    /// one `<|begin_of_text|>`, Qwen2's with none, although both configs name a BOS id.
    #[test]
    fn chat_prompts_never_double_bos() {
        let dir = fixture("llama3-instruct");
        let prompts = RolePrompts::load_dir(&dir).unwrap();
        assert!(!chat(&prompts).folds_system());
        let tokenizer = tokenizer_of(&dir);
        let bos = config_bos(&dir);
        assert_eq!(bos, Some(501));
        for role in [ProverRole::Helpful, ProverRole::Sneaky] {
            let ids = prompts
                .ids(&tokenizer, bos, role, "What is 17 + 25?")
                .unwrap();
            assert_eq!(ids[0], 501);
            assert_eq!(ids.iter().filter(|&&id| id == 501).count(), 1, "{ids:?}");
        }
        let text = prompts
            .text(ProverRole::Sneaky, " What is 17 + 25? ")
            .unwrap();
        let system = ChatPrompts::default().system.unwrap().sneaky;
        assert_eq!(
            text,
            format!(
                "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>\
                 <|start_header_id|>user<|end_header_id|>\n\nWhat is 17 + 25?<|eot_id|>\
                 <|start_header_id|>assistant<|end_header_id|>\n\n"
            )
        );

        let dir = fixture("qwen2");
        let prompts = RolePrompts::load_dir(&dir).unwrap();
        let tokenizer = tokenizer_of(&dir);
        let bos = config_bos(&dir);
        assert_eq!(bos, Some(507), "Qwen configs name <|endoftext|> as BOS");
        let ids = prompts
            .ids(&tokenizer, bos, ProverRole::Helpful, "What is 17 + 25?")
            .unwrap();
        assert_eq!(ids[0], 508, "<|im_start|> first: {ids:?}");
        assert!(!ids.contains(&507), "{ids:?}");
        assert!(
            prompts
                .describe()
                .contains("system prompt as its own message")
        );
    }

    /// The real Gemma 2 template refuses a system message; the system text then heads the
    /// user message, as the fixture's own Gemma template (which accepts one) does itself.
    #[test]
    fn gemma_templates_without_a_system_role_get_it_in_the_user_message() {
        let gemma2_it = "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}";
        let folded = with_template("gemma2", gemma2_it, None);
        assert!(chat(&folded).folds_system());
        assert!(folded.describe().contains("folded into the user message"));
        let own = RolePrompts::load_dir(&fixture("gemma2")).unwrap();
        assert!(!chat(&own).folds_system());
        let tokenizer = tokenizer_of(&fixture("gemma2"));
        for role in [ProverRole::Helpful, ProverRole::Sneaky] {
            let text = folded.text(role, "What is 17 + 25?").unwrap();
            let system = ChatPrompts::default().system.unwrap().get(role).to_string();
            assert_eq!(
                text,
                format!(
                    "<bos><start_of_turn>user\n{system}\n\nWhat is 17 + 25?<end_of_turn>\n<start_of_turn>model\n"
                )
            );
            assert_eq!(own.text(role, "What is 17 + 25?").unwrap(), text);
            let ids = folded
                .ids(&tokenizer, Some(2), role, "What is 17 + 25?")
                .unwrap();
            assert_eq!((ids[0], ids.iter().filter(|&&id| id == 2).count()), (2, 1));
        }
        // A template that silently drops system messages is treated the same way.
        let users_only =
            "{% for m in messages if m.role == 'user' %}<u>{{ m.content }}{% endfor %}<a>";
        let prompts = with_template("qwen2", users_only, None);
        assert!(chat(&prompts).folds_system());
        assert!(
            prompts
                .text(ProverRole::Sneaky, "Q?")
                .unwrap()
                .starts_with("<u>You are a sneaky")
        );
    }

    #[test]
    fn chat_prompt_files_plain_templates_and_template_kwargs() {
        // The chat form with per-checkpoint texts and template variables (Qwen3's thinking).
        let file = r#"{"system": {"helpful": "Be right.", "sneaky": "Be subtly wrong."},
                       "user": "Problem: {question}", "template_kwargs": {"enable_thinking": false}}"#;
        let qwen3 = std::fs::read_to_string(fixture("qwen3").join(CHAT_TEMPLATE_FILE)).unwrap();
        let prompts = with_template("qwen3", &qwen3, Some(file));
        assert_eq!(
            prompts.text(ProverRole::Sneaky, "2+2?").unwrap(),
            "<|im_start|>system\nBe subtly wrong.<|im_end|>\n<|im_start|>user\nProblem: 2+2?<|im_end|>\n\
             <|im_start|>assistant\n<think>\n\n</think>\n\n"
        );
        assert!(
            prompts
                .describe()
                .contains("role prompts from prompt_template.json")
        );
        // A plain template on an instruct checkpoint is the user message, no system message.
        let plain = serde_json::to_string(&PromptTemplate::default()).unwrap();
        let prompts = with_template("qwen3", &qwen3, Some(&plain));
        assert_eq!(
            prompts.text(ProverRole::Helpful, "2+2?").unwrap(),
            format!(
                "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n",
                PromptTemplate::default().render(ProverRole::Helpful, "2+2?")
            )
        );
        assert!(prompts.describe().contains("no system message"));
        // Without a chat template the chat form is refused; with one, bad files are.
        let error = RolePrompts::from_files(PromptFiles {
            prompt_template: Some(file.as_bytes()),
            chat: TemplateFiles::default(),
        })
        .unwrap_err();
        assert!(
            error.contains("has the chat form") && error.contains("no chat template"),
            "{error}"
        );
        for (bad, why) in [
            (
                r#"{"user": "no slot", "system": {"helpful": "a", "sneaky": "b"}}"#,
                "must contain {question} exactly once",
            ),
            (
                r#"{"user": "{question}"}"#,
                "identical, so the role would be lost",
            ),
            (
                r#"{"user": "{question}", "system": {"helpful": "a", "sneaky": "a"}}"#,
                "identical",
            ),
            (
                r#"{"user": "{question}", "sytem": {}}"#,
                "unknown field `sytem`",
            ),
            (
                r#"{"user": {"helpful": "{question}", "sneaky": "S {question}"}, "template_kwargs": {"messages": []}}"#,
                "may not set messages",
            ),
        ] {
            let error = PromptFile::from_json(bad.as_bytes()).unwrap_err();
            assert!(error.contains(why), "{bad}: {error}");
        }
        let per_role = r#"{"user": {"helpful": "{question}", "sneaky": "Mislead: {question}"}}"#;
        assert!(matches!(
            PromptFile::from_json(per_role.as_bytes()),
            Ok(PromptFile::Chat(_))
        ));
        // The plain form's messages are unchanged.
        let error =
            PromptFile::from_json(br#"{"helpful": "x", "sneaky": "{question}"}"#).unwrap_err();
        assert_eq!(
            error,
            "prompt_template.json: the helpful prompt must contain {question} exactly once"
        );
    }

    /// A template that refuses the conversation with and without a system message is refused
    /// with its own words; one that renders both roles alike would lose the role.
    #[test]
    fn templates_that_cannot_prompt_both_roles_are_refused() {
        let config = std::fs::read(fixture("qwen2").join("tokenizer_config.json")).unwrap();
        let prompts = |jinja: &str| {
            RolePrompts::from_files(PromptFiles {
                prompt_template: None,
                chat: TemplateFiles {
                    chat_template: Some(jinja.as_bytes()),
                    tokenizer_config: Some(&config),
                    special_tokens_map: None,
                },
            })
        };
        let error = prompts("{{ raise_exception('No maths here.') }}").unwrap_err();
        assert_eq!(
            error,
            "chat_template.jinja: the chat template refused the conversation: No maths here."
        );
        let error = prompts("{% if messages | length > 1 %}{{ raise_exception('One message only.') }}{% endif %}{{ undefined_function() }}").unwrap_err();
        assert!(error.starts_with("chat_template.jinja: the chat template refused the conversation: One message only.; with the system text in the user message instead: chat_template.jinja: the chat template failed:"), "{error}");
        let error = prompts("<|im_start|>assistant\n").unwrap_err();
        assert!(error.contains("the same prompt for both roles"), "{error}");
    }
}

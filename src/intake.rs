//! Before a participant's first item: the study's consent text (versioned), its background
//! questions and a comprehension check on the instructions (two attempts, then a screen-out).
//! Plain rules, no I/O: reading the researcher's question lists, checking a participant's
//! answers, and which step a participant is at. The store keeps the texts and the answers;
//! the server, not the page, decides when items may be served.

use std::collections::BTreeMap;

use pulldown_cmark::{Event, Parser, Tag, TagEnd};

/// Attempts at the comprehension check before a participant is screened out.
pub const COMPREHENSION_ATTEMPTS: i64 = 2;
/// Longest consent text accepted (a long information sheet is a few thousand characters).
pub const MAX_CONSENT_CHARS: usize = 50_000;
/// Most questions in one list.
pub const MAX_QUESTIONS: usize = 40;
/// Most options of one question.
pub const MAX_OPTIONS: usize = 12;
/// Longest question or option text.
pub const MAX_QUESTION_CHARS: usize = 500;
/// Longest free-text answer kept.
pub const MAX_TEXT_ANSWER_CHARS: usize = 1_000;

/// A multiple-choice question about the instructions with one right option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComprehensionQuestion {
    /// The question.
    pub text: String,
    /// Its options, in the researcher's order.
    pub options: Vec<String>,
    /// The index of the right option.
    pub right: usize,
}

/// What a background question takes.
#[derive(Debug, Clone, PartialEq)]
pub enum AnswerKind {
    /// One of the options.
    Choice(Vec<String>),
    /// A number within bounds (inclusive).
    Number {
        /// Smallest accepted.
        min: f64,
        /// Largest accepted.
        max: f64,
    },
    /// Free text, at most [`MAX_TEXT_ANSWER_CHARS`].
    Text,
}

/// A question about the participant (education, experience, …), asked once.
#[derive(Debug, Clone, PartialEq)]
pub struct BackgroundQuestion {
    /// The question; also its key in the stored answers and the downloads.
    pub text: String,
    /// What it takes.
    pub kind: AnswerKind,
    /// Whether a participant must answer it.
    pub required: bool,
}

/// Splits a question list into blocks separated by blank lines, each with its first line's
/// number (for messages).
fn blocks(source: &str) -> Vec<(usize, Vec<&str>)> {
    let mut out: Vec<(usize, Vec<&str>)> = Vec::new();
    let mut current: Option<(usize, Vec<&str>)> = None;
    for (i, line) in source.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            out.extend(current.take());
        } else {
            current
                .get_or_insert_with(|| (i + 1, Vec::new()))
                .1
                .push(line);
        }
    }
    out.extend(current);
    out
}

fn check_text(line: usize, what: &str, text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err(format!("line {line}: the {what} is empty"));
    }
    if text.chars().count() > MAX_QUESTION_CHARS {
        return Err(format!(
            "line {line}: the {what} is longer than {MAX_QUESTION_CHARS} characters"
        ));
    }
    Ok(text.to_string())
}

/// Reads comprehension questions as a researcher writes them: one block per question,
/// separated by blank lines; the first line is the question, then one line per option, the
/// right one starting with `*`, the others with `-`. Empty text means no check. The message
/// names the line.
pub fn parse_comprehension(source: &str) -> Result<Vec<ComprehensionQuestion>, String> {
    let blocks = blocks(source);
    if blocks.len() > MAX_QUESTIONS {
        return Err(format!("at most {MAX_QUESTIONS} questions"));
    }
    let mut questions = Vec::new();
    for (start, lines) in blocks {
        let text = check_text(start, "question", lines[0])?;
        let mut options = Vec::new();
        let mut right = Vec::new();
        for (k, line) in lines[1..].iter().enumerate() {
            let at = start + k + 1;
            let (is_right, option) = if let Some(rest) = line.strip_prefix('*') {
                (true, rest)
            } else if let Some(rest) = line.strip_prefix('-') {
                (false, rest)
            } else {
                return Err(format!(
                    "line {at}: an option starts with * (the right one) or - (a wrong one)"
                ));
            };
            if is_right {
                right.push(options.len());
            }
            options.push(check_text(at, "option", option.trim())?);
        }
        if options.len() < 2 || options.len() > MAX_OPTIONS {
            return Err(format!(
                "line {start}: \"{text}\" needs 2 to {MAX_OPTIONS} options, one per line"
            ));
        }
        let [right] = right[..] else {
            return Err(format!(
                "line {start}: \"{text}\" needs exactly one right option, marked with *"
            ));
        };
        questions.push(ComprehensionQuestion {
            text,
            options,
            right,
        });
    }
    Ok(questions)
}

/// How many questions were not answered with their right option (`chosen[i]` is the option
/// picked for question `i`; a missing answer counts as wrong).
pub fn wrong_answers(questions: &[ComprehensionQuestion], chosen: &[Option<usize>]) -> usize {
    questions
        .iter()
        .enumerate()
        .filter(|(i, q)| chosen.get(*i).copied().flatten() != Some(q.right))
        .count()
}

/// Reads background questions: one block per question, separated by blank lines; the first
/// line is `[KIND, required|optional] question`, where KIND is `choice` (then one option per
/// line, each starting with `-`), `number` or `number MIN-MAX`, or `text`. The message names
/// the line.
pub fn parse_background(source: &str) -> Result<Vec<BackgroundQuestion>, String> {
    let blocks = blocks(source);
    if blocks.len() > MAX_QUESTIONS {
        return Err(format!("at most {MAX_QUESTIONS} questions"));
    }
    let mut questions: Vec<BackgroundQuestion> = Vec::new();
    for (start, lines) in blocks {
        let head = lines[0];
        let form = || {
            format!(
                "line {start}: a question starts with [choice, required], [number 0-120, optional], [text, optional] or the like, then the question"
            )
        };
        let rest = head.strip_prefix('[').ok_or_else(form)?;
        let (spec, text) = rest.split_once(']').ok_or_else(form)?;
        let text = check_text(start, "question", text.trim())?;
        if questions.iter().any(|q| q.text == text) {
            return Err(format!("line {start}: \"{text}\" is asked twice"));
        }
        let (kind, need) = spec.split_once(',').ok_or_else(form)?;
        let required = match need.trim().to_ascii_lowercase().as_str() {
            "required" => true,
            "optional" => false,
            _ => return Err(form()),
        };
        let kind = kind.trim().to_ascii_lowercase();
        let options = &lines[1..];
        let kind = match kind.split_whitespace().collect::<Vec<_>>()[..] {
            ["choice"] => {
                let mut choices = Vec::new();
                for (k, line) in options.iter().enumerate() {
                    let at = start + k + 1;
                    let option = line
                        .strip_prefix('-')
                        .ok_or_else(|| format!("line {at}: an option starts with -"))?;
                    choices.push(check_text(at, "option", option.trim())?);
                }
                if choices.len() < 2 || choices.len() > MAX_OPTIONS {
                    return Err(format!(
                        "line {start}: \"{text}\" needs 2 to {MAX_OPTIONS} options, one per line starting with -"
                    ));
                }
                AnswerKind::Choice(choices)
            }
            ["number"] => AnswerKind::Number {
                min: f64::MIN,
                max: f64::MAX,
            },
            ["number", range] => {
                let bad =
                    || format!("line {start}: the range \"{range}\" is not MIN-MAX, such as 18-99");
                let (min, max) = range.split_once('-').ok_or_else(bad)?;
                let (min, max): (f64, f64) = (
                    min.trim().parse().map_err(|_| bad())?,
                    max.trim().parse().map_err(|_| bad())?,
                );
                if !(min.is_finite() && max.is_finite() && min <= max) {
                    return Err(bad());
                }
                AnswerKind::Number { min, max }
            }
            ["text"] => AnswerKind::Text,
            _ => return Err(form()),
        };
        if !matches!(kind, AnswerKind::Choice(_)) && !options.is_empty() {
            return Err(format!(
                "line {}: only a choice question has options",
                start + 1
            ));
        }
        questions.push(BackgroundQuestion {
            text,
            kind,
            required,
        });
    }
    Ok(questions)
}

/// What is wrong with one background answer; the rater pages say it in the rater's language.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AnswerProblem {
    /// A required question left blank.
    Required,
    /// A choice that is not one of the options.
    NotAnOption,
    /// A number outside the question's bounds.
    OutOfRange {
        /// Smallest accepted.
        min: f64,
        /// Largest accepted.
        max: f64,
    },
    /// Not a number.
    NotANumber,
    /// Free text over [`MAX_TEXT_ANSWER_CHARS`].
    TooLong,
}

/// A participant's background answers, keyed by question, as stored and exported (JSON:
/// a choice or text as a string, a number as a number, an unanswered optional question as
/// null).
pub type BackgroundAnswers = BTreeMap<String, serde_json::Value>;

/// Checks a participant's answers (`answers[i]` as typed or chosen for question `i`; blank is
/// unanswered). On refusal, each question at fault with its problem, so the page can show it
/// beside the question and keep what was typed.
pub fn read_background(
    questions: &[BackgroundQuestion],
    answers: &[String],
) -> Result<BackgroundAnswers, Vec<(usize, AnswerProblem)>> {
    let mut out = BackgroundAnswers::new();
    let mut problems = Vec::new();
    for (i, question) in questions.iter().enumerate() {
        let answer = answers.get(i).map(|a| a.trim()).unwrap_or("");
        if answer.is_empty() {
            if question.required {
                problems.push((i, AnswerProblem::Required));
            }
            out.insert(question.text.clone(), serde_json::Value::Null);
            continue;
        }
        let value = match &question.kind {
            AnswerKind::Choice(options) => match options.iter().find(|o| o.as_str() == answer) {
                Some(option) => serde_json::Value::String(option.clone()),
                None => {
                    problems.push((i, AnswerProblem::NotAnOption));
                    continue;
                }
            },
            AnswerKind::Number { min, max } => match answer.parse::<f64>() {
                Ok(n) if n.is_finite() && n >= *min && n <= *max => serde_json::json!(n),
                Ok(_) if *min > f64::MIN => {
                    problems.push((
                        i,
                        AnswerProblem::OutOfRange {
                            min: *min,
                            max: *max,
                        },
                    ));
                    continue;
                }
                _ => {
                    problems.push((i, AnswerProblem::NotANumber));
                    continue;
                }
            },
            AnswerKind::Text => {
                if answer.chars().count() > MAX_TEXT_ANSWER_CHARS {
                    problems.push((i, AnswerProblem::TooLong));
                    continue;
                }
                serde_json::Value::String(answer.to_string())
            }
        };
        out.insert(question.text.clone(), value);
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// Checks a consent text as a researcher saved it: blank means no consent page.
pub fn check_consent(markdown: &str) -> Result<Option<String>, String> {
    let text = markdown.trim();
    if text.is_empty() {
        return Ok(None);
    }
    if text.chars().count() > MAX_CONSENT_CHARS {
        return Err(format!(
            "the consent text is longer than {MAX_CONSENT_CHARS} characters"
        ));
    }
    Ok(Some(text.to_string()))
}

/// The consent text as HTML: Markdown's headings, lists, emphasis and links; any HTML the text
/// holds is shown as text, and links go only to http(s) or mailto addresses, so a consent text
/// cannot run script or restyle the page.
pub fn consent_html(markdown: &str) -> String {
    let mut dropped_links = 0usize;
    let events = Parser::new(markdown).filter_map(|event| match event {
        Event::Html(html) | Event::InlineHtml(html) => Some(Event::Text(html)),
        Event::Start(Tag::Image { .. }) | Event::End(TagEnd::Image) => None,
        Event::Start(Tag::Link { ref dest_url, .. }) => {
            let url = dest_url.to_ascii_lowercase();
            if url.starts_with("https://")
                || url.starts_with("http://")
                || url.starts_with("mailto:")
            {
                Some(event)
            } else {
                dropped_links += 1;
                None
            }
        }
        Event::End(TagEnd::Link) if dropped_links > 0 => {
            dropped_links -= 1;
            None
        }
        other => Some(other),
    });
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, events);
    html
}

/// What a study asks before items, as far as the steps go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IntakeAsked {
    /// The current consent version; none without a consent page.
    pub consent_version: Option<i64>,
    /// The study has comprehension questions.
    pub comprehension: bool,
    /// The study has background questions.
    pub background: bool,
}

/// Where a participant stands with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IntakeDone {
    /// The consent version they accepted.
    pub consent_version: Option<i64>,
    /// They declined consent.
    pub consent_declined: bool,
    /// Failed comprehension attempts.
    pub comprehension_failures: i64,
    /// They passed the comprehension check.
    pub comprehension_passed: bool,
    /// They answered the background questions.
    pub background_done: bool,
}

/// The step a participant is at before items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntakeStep {
    /// Read the consent text and accept or decline.
    Consent,
    /// They declined: the study ends for them.
    DeclinedConsent,
    /// Answer the background questions.
    Background,
    /// Answer the questions on the instructions.
    Comprehension {
        /// Attempts left, counting this one.
        attempts_left: i64,
    },
    /// Comprehension failed on every attempt: the study ends for them.
    ScreenedOut,
    /// Items may be served.
    Ready,
}

/// The next step, in the order consent → background → instructions with the comprehension
/// check → items. A participant who accepted an earlier consent version keeps their consent
/// (what they agreed to is stored with its version).
pub fn next_step(asked: IntakeAsked, done: IntakeDone) -> IntakeStep {
    if asked.consent_version.is_some() && done.consent_version.is_none() {
        return if done.consent_declined {
            IntakeStep::DeclinedConsent
        } else {
            IntakeStep::Consent
        };
    }
    if asked.background && !done.background_done {
        return IntakeStep::Background;
    }
    if asked.comprehension && !done.comprehension_passed {
        let attempts_left = COMPREHENSION_ATTEMPTS - done.comprehension_failures;
        return if attempts_left > 0 {
            IntakeStep::Comprehension { attempts_left }
        } else {
            IntakeStep::ScreenedOut
        };
    }
    IntakeStep::Ready
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHECK: &str = "How long do you have for each solution?\n\
                         - As long as I like\n\
                         * The time the countdown shows\n\
                         \n\
                         \n\
                         What do you judge?\n\
                         * Whether every step is right\n\
                         - Whether the writing is nice\n\
                         - Only the final answer\n";

    #[test]
    fn comprehension_questions_are_read_and_graded() {
        let questions = parse_comprehension(CHECK).unwrap();
        assert_eq!(questions.len(), 2);
        assert_eq!(questions[0].right, 1);
        assert_eq!(questions[1].options.len(), 3);
        assert_eq!(questions[1].options[2], "Only the final answer");
        assert_eq!(wrong_answers(&questions, &[Some(1), Some(0)]), 0);
        assert_eq!(wrong_answers(&questions, &[Some(0), Some(0)]), 1);
        assert_eq!(wrong_answers(&questions, &[Some(1)]), 1);
        assert_eq!(wrong_answers(&questions, &[None, Some(7)]), 2);
        assert_eq!(parse_comprehension("  \n").unwrap(), vec![]);
    }

    #[test]
    fn broken_comprehension_lists_name_the_line() {
        for (source, says) in [
            (
                "Q?\n- a\n- b\n",
                "line 1: \"Q?\" needs exactly one right option",
            ),
            ("Q?\n* a\n* b\n", "exactly one right option"),
            ("Q?\n* a\n", "needs 2 to 12 options"),
            ("Q?\n* a\nb\n", "line 3: an option starts with *"),
            ("Q?\n* a\n- \n", "line 3: the option is empty"),
        ] {
            let error = parse_comprehension(source).unwrap_err();
            assert!(error.contains(says), "{source:?}: {error}");
        }
    }

    const BACKGROUND: &str = "[choice, required] Highest maths education\n\
                              - School\n\
                              - University\n\
                              \n\
                              [number 0-80, optional] Years of teaching maths\n\
                              \n\
                              [TEXT, Optional] Anything else?\n";

    #[test]
    fn background_questions_are_read_and_answers_checked() {
        let questions = parse_background(BACKGROUND).unwrap();
        assert_eq!(questions.len(), 3);
        assert!(questions[0].required && !questions[1].required);
        assert_eq!(
            questions[1].kind,
            AnswerKind::Number {
                min: 0.0,
                max: 80.0
            }
        );
        assert_eq!(questions[2].kind, AnswerKind::Text);
        let answers = read_background(&questions, &["University".into(), "2.5".into()]).unwrap();
        assert_eq!(answers["Highest maths education"], "University");
        assert_eq!(answers["Years of teaching maths"], 2.5);
        assert_eq!(answers["Anything else?"], serde_json::Value::Null);
        let refused =
            read_background(&questions, &["".into(), "99".into(), "x".repeat(1001)]).unwrap_err();
        assert_eq!(
            refused,
            vec![
                (0, AnswerProblem::Required),
                (
                    1,
                    AnswerProblem::OutOfRange {
                        min: 0.0,
                        max: 80.0
                    }
                ),
                (2, AnswerProblem::TooLong),
            ]
        );
        let not_an_option =
            read_background(&questions, &["College".into(), "two".into()]).unwrap_err();
        assert_eq!(not_an_option[0].1, AnswerProblem::NotAnOption);
        assert_eq!(not_an_option[1].1, AnswerProblem::NotANumber);
    }

    #[test]
    fn broken_background_lists_name_the_line() {
        for (source, says) in [
            ("Age?\n", "line 1: a question starts with [choice"),
            ("[number, sometimes] Age?\n", "line 1: a question starts"),
            (
                "[number 9-1, required] Age?\n",
                "the range \"9-1\" is not MIN-MAX",
            ),
            ("[choice, required] Pick\n- a\n", "needs 2 to 12 options"),
            (
                "[text, optional] Say\n- a\n",
                "line 2: only a choice question",
            ),
            (
                "[text, optional] Say\n\n[text, required] Say\n",
                "line 3: \"Say\" is asked twice",
            ),
        ] {
            let error = parse_background(source).unwrap_err();
            assert!(error.contains(says), "{source:?}: {error}");
        }
    }

    #[test]
    fn consent_markdown_cannot_carry_html_or_script_links() {
        let html = consent_html(
            "# Consent\n\nYou may **stop** at any time. <script>alert(1)</script>\n\n\
             [Contact](mailto:lab@example.org) [bad](javascript:alert(1)) ![x](http://t/i.png)\n\n- a\n- b\n",
        );
        assert!(html.contains("<h1>Consent</h1>"), "{html}");
        assert!(html.contains("<strong>stop</strong>"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains("<script"), "{html}");
        assert!(
            html.contains("<a href=\"mailto:lab@example.org\">Contact</a>"),
            "{html}"
        );
        assert!(!html.contains("javascript:"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("<li>a</li>"), "{html}");
        assert_eq!(check_consent("  \n"), Ok(None));
        assert!(check_consent(&"x".repeat(MAX_CONSENT_CHARS + 1)).is_err());
    }

    #[test]
    fn steps_go_consent_background_comprehension_items() {
        let asked = IntakeAsked {
            consent_version: Some(2),
            comprehension: true,
            background: true,
        };
        let mut done = IntakeDone::default();
        assert_eq!(next_step(asked, done), IntakeStep::Consent);
        done.consent_declined = true;
        assert_eq!(next_step(asked, done), IntakeStep::DeclinedConsent);
        done.consent_declined = false;
        // Consent to an earlier version stands.
        done.consent_version = Some(1);
        assert_eq!(next_step(asked, done), IntakeStep::Background);
        done.background_done = true;
        assert_eq!(
            next_step(asked, done),
            IntakeStep::Comprehension { attempts_left: 2 }
        );
        done.comprehension_failures = 1;
        assert_eq!(
            next_step(asked, done),
            IntakeStep::Comprehension { attempts_left: 1 }
        );
        done.comprehension_failures = 2;
        assert_eq!(next_step(asked, done), IntakeStep::ScreenedOut);
        done.comprehension_failures = 1;
        done.comprehension_passed = true;
        assert_eq!(next_step(asked, done), IntakeStep::Ready);
        assert_eq!(
            next_step(IntakeAsked::default(), IntakeDone::default()),
            IntakeStep::Ready
        );
    }
}

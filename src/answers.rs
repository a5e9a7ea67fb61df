//! What a rater's answer holds beyond the verdict, and the rules a study sets for it: the
//! answer format (a verdict, a verdict with confidence, or a probability), the justification,
//! and the trial-integrity events the page counted while the item ran. Plain functions: the
//! store checks every answer with [`read_answer`] before anything is written, so a refused
//! answer (422) leaves the item, its deadline and the rater's clock as they were.

use crate::domain::{AnswerFormat, JustificationRule, Verdict};
use crate::judging::RequestedVerdict;

/// The confidences a rater may state with a verdict, in percent.
pub const CONFIDENCE_LEVELS: [i64; 6] = [50, 60, 70, 80, 90, 100];

/// A stated probability moves in steps of this many percent (0, 5, …, 100).
pub const PROBABILITY_STEP: i64 = 5;

/// The longest justification kept, in characters.
pub const MAX_JUSTIFICATION_CHARS: usize = 2_000;

/// How a study asks raters to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnswerRules {
    /// Verdict, verdict + confidence, or probability.
    pub format: AnswerFormat,
    /// Probability studies only: whether 50 % may be given. Left out by default, so that every
    /// answer leans one way ("so raters commit").
    pub allow_even_odds: bool,
    /// Whether a short justification is not asked for, optional or required.
    pub justification: JustificationRule,
}

impl Default for AnswerRules {
    /// The paper's design: a plain verdict, nothing else.
    fn default() -> Self {
        AnswerRules {
            format: AnswerFormat::Binary,
            allow_even_odds: false,
            justification: JustificationRule::NotAsked,
        }
    }
}

impl AnswerRules {
    /// The probabilities a rater may choose, in percent.
    pub fn probability_choices(&self) -> Vec<i64> {
        (0..=100)
            .step_by(PROBABILITY_STEP as usize)
            .filter(|p| *p != 50 || self.allow_even_odds)
            .collect()
    }

    /// The rules in words, for the study page and the report.
    pub fn describe(&self) -> String {
        let format = match self.format {
            AnswerFormat::Binary => "correct / wrong".to_string(),
            AnswerFormat::Confidence => "correct / wrong with a confidence of 50-100 %".to_string(),
            AnswerFormat::Probability if self.allow_even_odds => {
                "probability correct, 0-100 % in steps of 5".to_string()
            }
            AnswerFormat::Probability => {
                "probability correct, 0-100 % in steps of 5, without 50 %".to_string()
            }
        };
        match self.justification {
            JustificationRule::NotAsked => format,
            JustificationRule::Optional => format!("{format}; justification optional"),
            JustificationRule::Required => format!("{format}; justification required"),
        }
    }
}

/// What the rater's page sent, before it is checked against the study's rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnswerInput {
    /// `correct`, `wrong`, or `timeout` when the page's countdown ended; a probability study's
    /// page sends none (the verdict follows from the probability).
    pub verdict: Option<RequestedVerdict>,
    /// Confidence in the verdict, percent.
    pub confidence: Option<i64>,
    /// Probability that the solution is correct, percent.
    pub probability: Option<i64>,
    /// The rater's reason, as typed.
    pub justification: Option<String>,
    /// What the page counted while the item ran (absent without the page's script).
    pub events: Option<TrialEvents>,
}

impl AnswerInput {
    /// A plain verdict and nothing else.
    pub fn verdict(verdict: RequestedVerdict) -> AnswerInput {
        AnswerInput {
            verdict: Some(verdict),
            ..AnswerInput::default()
        }
    }
}

/// A checked answer, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The verdict asked for (a probability's side of 50 %: 50 and above is `correct`).
    pub requested: RequestedVerdict,
    /// Confidence in the verdict, percent (confidence studies).
    pub confidence: Option<i64>,
    /// Probability that the solution is correct, percent (probability studies).
    pub probability: Option<i64>,
    /// The rater's reason, trimmed; `None` when empty.
    pub justification: Option<String>,
    /// What the page counted while the item ran.
    pub events: Option<TrialEvents>,
}

impl Answer {
    /// A timeout with nothing else: what the server records when no answer arrived.
    pub fn timeout() -> Answer {
        Answer {
            requested: RequestedVerdict::Timeout,
            confidence: None,
            probability: None,
            justification: None,
            events: None,
        }
    }

    /// A plain verdict, as a binary study's page sends it.
    pub fn verdict(requested: RequestedVerdict) -> Answer {
        Answer {
            requested,
            ..Answer::timeout()
        }
    }
}

/// Checks `input` against `rules`; the error names the problem in the rater's words. A
/// timeout sent by the page is always accepted and keeps only the page's events: nothing the
/// rater had half-entered counts as an answer.
pub fn read_answer(rules: &AnswerRules, input: AnswerInput) -> Result<Answer, String> {
    let events = input.events.map(TrialEvents::recorded);
    if input.verdict == Some(RequestedVerdict::Timeout) {
        return Ok(Answer {
            events,
            ..Answer::timeout()
        });
    }
    let justification = input
        .justification
        .map(|text| text.trim().to_string())
        .filter(|text| !text.is_empty());
    let (requested, confidence, probability) = match rules.format {
        AnswerFormat::Binary => {
            if input.confidence.is_some() || input.probability.is_some() {
                return Err(
                    "this study asks for correct or wrong only, not a confidence or probability"
                        .into(),
                );
            }
            (chosen_verdict(input.verdict)?, None, None)
        }
        AnswerFormat::Confidence => {
            let verdict = chosen_verdict(input.verdict)?;
            let levels = CONFIDENCE_LEVELS.map(|c| c.to_string()).join(", ");
            match input.confidence {
                None => return Err(format!("choose how confident you are: {levels} %")),
                Some(c) if !CONFIDENCE_LEVELS.contains(&c) => {
                    return Err(format!(
                        "a confidence of {c} % is not one of the choices: {levels} %"
                    ));
                }
                Some(c) => (verdict, Some(c), None),
            }
        }
        AnswerFormat::Probability => {
            let Some(p) = input.probability else {
                return Err(
                    "choose how likely it is that the solution is correct (0-100 %)".into(),
                );
            };
            if !rules.probability_choices().contains(&p) {
                return Err(if p == 50 {
                    "50 % is not allowed in this study: lean one way, above or below 50 %".into()
                } else {
                    format!("{p} % is not one of the choices: 0 to 100 % in steps of 5")
                });
            }
            let verdict = if p >= 50 {
                RequestedVerdict::Correct
            } else {
                RequestedVerdict::Wrong
            };
            (verdict, None, Some(p))
        }
    };
    if let Some(text) = &justification {
        let chars = text.chars().count();
        if chars > MAX_JUSTIFICATION_CHARS {
            return Err(format!(
                "the justification is {chars} characters long; keep it to \
                 {MAX_JUSTIFICATION_CHARS}"
            ));
        }
    }
    let justification = match rules.justification {
        JustificationRule::NotAsked => None,
        JustificationRule::Optional => justification,
        JustificationRule::Required => Some(
            justification.ok_or("give a short justification for your answer before sending it")?,
        ),
    };
    Ok(Answer {
        requested,
        confidence,
        probability,
        justification,
        events,
    })
}

fn chosen_verdict(verdict: Option<RequestedVerdict>) -> Result<RequestedVerdict, String> {
    match verdict {
        Some(v @ (RequestedVerdict::Correct | RequestedVerdict::Wrong)) => Ok(v),
        _ => Err("choose Correct or Wrong".into()),
    }
}

/// The probability, as a share, that a stored answer gave the solution being correct: the
/// stated probability, or the confidence on the verdict's side (a "wrong" at 80 % is 20 %
/// correct). `None` for a plain verdict and for a timeout (a late answer stored as a timeout
/// stated nothing in time).
pub fn stated_probability(
    verdict: Verdict,
    confidence: Option<i64>,
    probability: Option<i64>,
) -> Option<f64> {
    match (verdict, probability, confidence) {
        (Verdict::Timeout, _, _) => None,
        (_, Some(p), _) => Some(p as f64 / 100.0),
        (Verdict::Correct, None, Some(c)) => Some(c as f64 / 100.0),
        (Verdict::Wrong, None, Some(c)) => Some((100 - c) as f64 / 100.0),
        (_, None, None) => None,
    }
}

/// Trial-integrity events the rater's page counted while one item ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct TrialEvents {
    /// Times the tab was hidden (another tab or application in front).
    pub hidden_count: i64,
    /// Milliseconds the tab was hidden, in all.
    pub hidden_ms: i64,
    /// Times the window lost focus (includes hiding).
    pub blur_count: i64,
    /// Copy (and cut) events on the page.
    pub copy_count: i64,
    /// Paste events on the page.
    pub paste_count: i64,
}

/// Largest count or duration kept: a day's milliseconds (anything above is not a real count).
const MAX_EVENT_VALUE: i64 = 24 * 60 * 60 * 1000;

impl TrialEvents {
    /// The events as stored: values that cannot be counts (negative, absurdly large) are
    /// clamped, so a tampered page leaves a trace instead of an error that would lose the
    /// answer.
    pub fn recorded(self) -> TrialEvents {
        let keep = |v: i64| v.clamp(0, MAX_EVENT_VALUE);
        TrialEvents {
            hidden_count: keep(self.hidden_count),
            hidden_ms: keep(self.hidden_ms),
            blur_count: keep(self.blur_count),
            copy_count: keep(self.copy_count),
            paste_count: keep(self.paste_count),
        }
    }

    /// The integrity flags these events raise, in the downloads' words.
    pub fn flags(&self) -> Vec<IntegrityFlag> {
        let mut flags = Vec::new();
        if self.hidden_count > 0 {
            flags.push(IntegrityFlag::LeftTab);
        } else if self.blur_count > 0 {
            flags.push(IntegrityFlag::LostFocus);
        }
        if self.copy_count > 0 {
            flags.push(IntegrityFlag::Copied);
        }
        if self.paste_count > 0 {
            flags.push(IntegrityFlag::Pasted);
        }
        flags
    }
}

/// Why an attempt's integrity deserves a second look: the rater may have looked elsewhere
/// (another tab, another window) or moved text in or out (a calculator, a chatbot). Apart from
/// the timing outcome, which says how the attempt ended in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntegrityFlag {
    /// The tab was hidden at least once.
    LeftTab,
    /// The window lost focus without the tab being hidden (another window in front).
    LostFocus,
    /// Text was copied or cut from the page.
    Copied,
    /// Text was pasted into the page.
    Pasted,
}

impl IntegrityFlag {
    /// The flag's name in the downloads.
    pub fn as_str(self) -> &'static str {
        match self {
            IntegrityFlag::LeftTab => "left_tab",
            IntegrityFlag::LostFocus => "lost_focus",
            IntegrityFlag::Copied => "copied",
            IntegrityFlag::Pasted => "pasted",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(format: AnswerFormat, justification: JustificationRule) -> AnswerRules {
        AnswerRules {
            format,
            allow_even_odds: false,
            justification,
        }
    }

    fn input(verdict: Option<RequestedVerdict>) -> AnswerInput {
        AnswerInput {
            verdict,
            ..AnswerInput::default()
        }
    }

    #[test]
    fn probability_answers_commit_unless_even_odds_are_allowed() {
        let mut probability = rules(AnswerFormat::Probability, JustificationRule::NotAsked);
        assert_eq!(probability.probability_choices().len(), 20);
        let answer = |p: i64, r: &AnswerRules| {
            read_answer(
                r,
                AnswerInput {
                    probability: Some(p),
                    ..input(None)
                },
            )
        };
        let err = answer(50, &probability).unwrap_err();
        assert!(err.contains("50 % is not allowed"), "{err}");
        assert!(answer(33, &probability).unwrap_err().contains("steps of 5"));
        assert!(answer(105, &probability).is_err());
        assert!(answer(-5, &probability).is_err());
        let low = answer(45, &probability).expect("45");
        assert_eq!(
            (low.requested, low.probability),
            (RequestedVerdict::Wrong, Some(45))
        );
        assert_eq!(
            answer(100, &probability).expect("100").requested,
            RequestedVerdict::Correct
        );
        probability.allow_even_odds = true;
        assert_eq!(probability.probability_choices().len(), 21);
        assert_eq!(
            answer(50, &probability).expect("50").requested,
            RequestedVerdict::Correct
        );
        let missing = read_answer(&probability, input(None)).unwrap_err();
        assert!(missing.contains("how likely"), "{missing}");
    }

    #[test]
    fn confidence_and_justification_rules() {
        let confidence = rules(AnswerFormat::Confidence, JustificationRule::Required);
        let base = AnswerInput {
            confidence: Some(70),
            justification: Some("  step 2 adds wrong  ".into()),
            ..input(Some(RequestedVerdict::Wrong))
        };
        let answer = read_answer(&confidence, base.clone()).expect("valid");
        assert_eq!(answer.confidence, Some(70));
        assert_eq!(answer.justification.as_deref(), Some("step 2 adds wrong"));
        let no_reason = AnswerInput {
            justification: Some("   ".into()),
            ..base.clone()
        };
        assert!(
            read_answer(&confidence, no_reason)
                .unwrap_err()
                .contains("justification")
        );
        let odd = AnswerInput {
            confidence: Some(75),
            ..base.clone()
        };
        assert!(read_answer(&confidence, odd).unwrap_err().contains("75 %"));
        let no_verdict = AnswerInput {
            verdict: None,
            ..base.clone()
        };
        assert!(read_answer(&confidence, no_verdict).is_err());
        let long = AnswerInput {
            justification: Some("x".repeat(MAX_JUSTIFICATION_CHARS + 1)),
            ..base.clone()
        };
        assert!(read_answer(&confidence, long).unwrap_err().contains("2000"));
        // A timeout from the page needs nothing, and keeps nothing half-entered.
        let timeout = AnswerInput {
            verdict: Some(RequestedVerdict::Timeout),
            ..base
        };
        assert_eq!(read_answer(&confidence, timeout), Ok(Answer::timeout()));
        // A study that does not ask for a justification drops one.
        let binary = rules(AnswerFormat::Binary, JustificationRule::NotAsked);
        let plain = AnswerInput {
            justification: Some("because".into()),
            ..input(Some(RequestedVerdict::Correct))
        };
        assert_eq!(
            read_answer(&binary, plain),
            Ok(Answer::verdict(RequestedVerdict::Correct))
        );
        let with_confidence = AnswerInput {
            confidence: Some(60),
            ..input(Some(RequestedVerdict::Correct))
        };
        assert!(read_answer(&binary, with_confidence).is_err());
    }

    #[test]
    fn stated_probability_of_each_format() {
        assert_eq!(
            stated_probability(Verdict::Correct, None, Some(85)),
            Some(0.85)
        );
        assert_eq!(
            stated_probability(Verdict::Correct, Some(80), None),
            Some(0.8)
        );
        assert_eq!(
            stated_probability(Verdict::Wrong, Some(80), None),
            Some(0.2)
        );
        assert_eq!(stated_probability(Verdict::Wrong, None, None), None);
        assert_eq!(stated_probability(Verdict::Timeout, None, Some(85)), None);
    }

    #[test]
    fn events_are_clamped_and_flagged() {
        let events = TrialEvents {
            hidden_count: 0,
            hidden_ms: -4,
            blur_count: 2,
            copy_count: 0,
            paste_count: i64::MAX,
        }
        .recorded();
        assert_eq!((events.hidden_ms, events.paste_count), (0, MAX_EVENT_VALUE));
        assert_eq!(
            events.flags(),
            vec![IntegrityFlag::LostFocus, IntegrityFlag::Pasted]
        );
        let hidden = TrialEvents {
            hidden_count: 1,
            blur_count: 1,
            ..TrialEvents::default()
        };
        assert_eq!(hidden.flags(), vec![IntegrityFlag::LeftTab]);
        assert!(TrialEvents::default().flags().is_empty());
    }
}

//! Role conditioning: the prompt template stored with a prover checkpoint.
//!
//! The paper conditions one prover on its role through the system prompt. A checkpoint carries
//! its own template (`prompt_template.json`) because a model only understands the prompt it was
//! trained with; checkpoints without one get [`PromptTemplate::default`].

use serde::{Deserialize, Serialize};

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
}

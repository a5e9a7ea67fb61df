//! The research's vocabulary as types: prover roles, verdicts, checkpoint kinds, account roles.
//!
//! Each is stored as a short lowercase string in the database and in files, so the enums
//! convert both ways and reject anything else with a message naming the accepted values.

use std::fmt;
use std::str::FromStr;

/// Declares a string-backed enum with `as_str`, `Display` and a `FromStr` whose error names
/// the thing in the user's words (`$what`, e.g. "role") and lists the accepted spellings.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident ($what:literal) { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored spelling.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        "{:?} is not a {}; expected one of: {}",
                        other,
                        $what,
                        [$($text),+].join(", ")
                    )),
                }
            }
        }
    };
}

string_enum!(
    /// What a quality item (a solution of known correctness outside the study) is for:
    /// teaching raters with feedback, admitting them, or watching them silently.
    QualityPurpose ("quality item purpose") { Practice => "practice", Screening => "screening", Gold => "gold" }
);

string_enum!(
    /// The prover's role, chosen by its system prompt: helpful provers should be right and
    /// convincing, sneaky provers subtly wrong and still convincing.
    ProverRole ("prover role") { Helpful => "helpful", Sneaky => "sneaky" }
);

string_enum!(
    /// What a rater's judgement records. `Timeout` is never chosen by the rater: the server
    /// stores it whenever the answer arrives after the deadline.
    Verdict ("verdict") { Correct => "correct", Wrong => "wrong", Timeout => "timeout" }
);

impl Verdict {
    /// Whether this verdict on a solution whose correctness is `is_correct` was right:
    /// `None` for a timeout, which answered nothing. The one rule reports and rater quality
    /// checks share.
    pub fn agrees_with(self, is_correct: bool) -> Option<bool> {
        match self {
            Verdict::Correct => Some(is_correct),
            Verdict::Wrong => Some(!is_correct),
            Verdict::Timeout => None,
        }
    }
}

string_enum!(
    /// The grader's verdict on a solution. `Ungradable` means it states no final answer the
    /// grader can read: its correctness is unknown, so it is stored but never made a study item.
    GradeOutcome ("grade") { Correct => "correct", Incorrect => "incorrect", Ungradable => "ungradable" }
);

string_enum!(
    /// What a model checkpoint is: a prover writes solutions, a verifier scores them.
    CheckpointKind ("checkpoint kind") { Prover => "prover", Verifier => "verifier" }
);

string_enum!(
    /// Staff account roles. Raters have no account: they enter by invite token.
    UserRole ("staff role") { Admin => "admin", Researcher => "researcher" }
);

string_enum!(
    /// Life of an assignment: `Active` while the rater may answer, `Judged` once a judgement
    /// (possibly `timeout`) is stored, `Abandoned` when its slot returned to the pool.
    AssignmentState ("assignment state") { Active => "active", Judged => "judged", Abandoned => "abandoned" }
);

string_enum!(
    /// Whether a study still serves items to raters.
    StudyStatus ("study status") { Open => "open", Closed => "closed" }
);

/// Parses a stored string, turning an unexpected value into a database-level error (it can
/// only come from a corrupted row, never from user input).
pub fn parse_stored<T: FromStr<Err = String>>(value: &str) -> Result<T, sqlx::Error> {
    value
        .parse()
        .map_err(|e: String| sqlx::Error::Decode(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_unknown_values() {
        for role in ProverRole::ALL {
            assert_eq!(role.as_str().parse::<ProverRole>(), Ok(*role));
        }
        let err = "honest".parse::<ProverRole>().unwrap_err();
        assert_eq!(
            err,
            "\"honest\" is not a prover role; expected one of: helpful, sneaky"
        );
        assert_eq!("timeout".parse::<Verdict>(), Ok(Verdict::Timeout));
    }
}

string_enum!(
    /// What a background job does; the worker dispatches on it.
    JobKind ("job kind") { Generation => "generation", VerifierTraining => "verifier_training", VerifierScoring => "verifier_scoring", TrainingRun => "training_run" }
);

string_enum!(
    /// Where a job is in its life. `Running` jobs hold a lease; a running job whose lease
    /// expired is claimable again, so a dead worker's job is retried.
    JobState ("job state") { Queued => "queued", Running => "running", Succeeded => "succeeded", Failed => "failed", Cancelled => "cancelled" }
);

string_enum!(
    /// Where a verifier's training labels come from: the raters' majority verdict, the
    /// grader's ground truth, or both (the majority where raters reached one, else ground truth).
    LabelSource ("label source") { Human => "human", GroundTruth => "ground_truth", Both => "both" }
);

string_enum!(
    /// The verifier's training loss: the paper's Bradley–Terry comparison of correct and
    /// incorrect solutions to one problem (plus λ·E[V²]), or plain cross-entropy on labels.
    VerifierLoss ("verifier loss") { BradleyTerry => "bradley_terry", CrossEntropy => "cross_entropy" }
);

string_enum!(
    /// How a study asks raters to answer: a plain verdict (the paper), a verdict with the
    /// rater's confidence in it (50-100 %), or the probability that the solution is correct.
    AnswerFormat ("answer format") { Binary => "binary", Confidence => "confidence", Probability => "probability" }
);

string_enum!(
    /// Whether a study asks raters for a short justification of each answer.
    JustificationRule ("justification setting") { NotAsked => "none", Optional => "optional", Required => "required" }
);

string_enum!(
    /// How a study's time-limit arms are given: one limit per rater (between raters), or every
    /// limit to every rater in blocks of items or interleaved item by item (within rater).
    ArmDesign ("arm design") { Between => "between", Blocked => "blocked", Interleaved => "interleaved" }
);

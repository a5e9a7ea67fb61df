//! Panel entry: participants recruited on a panel (Prolific, CloudResearch Connect, …) arrive
//! through one entry link per study, `/s/{link}?PROLIFIC_PID=…&STUDY_ID=…&SESSION_ID=…`,
//! instead of a personal invite. The panel's participant ID identifies the rater: their token
//! is derived from the study's panel secret and the ID, so the same ID resumes in any browser
//! without the server keeping a token it could leak. Plain rules, no I/O.

use std::collections::HashMap;

/// Prolific's names for the parameters it appends to a study URL.
pub const DEFAULT_ID_PARAM: &str = "PROLIFIC_PID";
/// Prolific's study ID parameter.
pub const DEFAULT_STUDY_PARAM: &str = "STUDY_ID";
/// Prolific's session ID parameter.
pub const DEFAULT_SESSION_PARAM: &str = "SESSION_ID";

/// Longest participant (or panel study/session) ID accepted. Prolific's are 24 hex digits,
/// CloudResearch's shorter; 64 leaves room for any panel without storing free text.
pub const MAX_ID_LEN: usize = 64;
/// Longest URL parameter name accepted.
pub const MAX_PARAM_LEN: usize = 40;

/// The URL parameters a study's panel fills in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PanelParams {
    /// The participant ID (required on every entry).
    pub id_param: String,
    /// The panel's study ID, recorded when present.
    pub study_param: Option<String>,
    /// The panel's session ID, recorded when present.
    pub session_param: Option<String>,
}

impl Default for PanelParams {
    fn default() -> Self {
        Self {
            id_param: DEFAULT_ID_PARAM.into(),
            study_param: Some(DEFAULT_STUDY_PARAM.into()),
            session_param: Some(DEFAULT_SESSION_PARAM.into()),
        }
    }
}

impl PanelParams {
    /// Checks parameter names as a researcher typed them (blank optional names mean "none"):
    /// letters, digits and `_`, at most [`MAX_PARAM_LEN`], all three different. The message
    /// names the field.
    pub fn parse(id: &str, study: &str, session: &str) -> Result<Self, String> {
        let id = id.trim();
        if id.is_empty() {
            return Err(
                "participant ID parameter: give the name the panel uses, such as PROLIFIC_PID"
                    .into(),
            );
        }
        check_param_name("participant ID parameter", id)?;
        let optional = |field: &str, value: &str| -> Result<Option<String>, String> {
            let value = value.trim();
            if value.is_empty() {
                return Ok(None);
            }
            check_param_name(field, value)?;
            Ok(Some(value.to_string()))
        };
        let study = optional("study ID parameter", study)?;
        let session = optional("session ID parameter", session)?;
        let names: Vec<&str> = [Some(id), study.as_deref(), session.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        for (i, a) in names.iter().enumerate() {
            if names[i + 1..].contains(a) {
                return Err(format!(
                    "the parameter name {a} is given twice: each must differ"
                ));
            }
        }
        Ok(Self {
            id_param: id.to_string(),
            study_param: study,
            session_param: session,
        })
    }

    /// The entry URL to paste into the panel's study settings, with Prolific's placeholders
    /// (`{{%PROLIFIC_PID%}}`) for the parameters; other panels use their own placeholder syntax
    /// in the same places.
    pub fn entry_url(&self, base: &str, link: &str) -> String {
        let mut url = format!("{}/s/{link}", base.trim_end_matches('/'));
        let params = [
            Some(&self.id_param),
            self.study_param.as_ref(),
            self.session_param.as_ref(),
        ];
        for (i, name) in params.into_iter().flatten().enumerate() {
            let sep = if i == 0 { '?' } else { '&' };
            url.push_str(&format!("{sep}{name}={{{{%{name}%}}}}"));
        }
        url
    }
}

fn check_param_name(field: &str, name: &str) -> Result<(), String> {
    if name.len() > MAX_PARAM_LEN {
        return Err(format!("{field}: at most {MAX_PARAM_LEN} characters"));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!(
            "{field}: only letters, digits and _ (\"{name}\" has other characters)"
        ));
    }
    Ok(())
}

/// What one entry through the panel link carries, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PanelEntry {
    /// The panel's participant ID.
    pub participant_id: String,
    /// The panel's study ID, when the panel sent one.
    pub panel_study_id: Option<String>,
    /// The panel's session ID, when the panel sent one.
    pub panel_session_id: Option<String>,
}

/// Why an entry's query string is refused, in the participant's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryRefused {
    /// The participant ID parameter is missing or empty.
    #[error(
        "This link is missing your participant ID ({0}). Please open the study from the panel's page, which adds it."
    )]
    MissingId(String),
    /// An ID is too long or has characters no panel uses.
    #[error(
        "The {0} in this link is not valid: it must be 1 to {MAX_ID_LEN} letters, digits, _ or -. Please open the study from the panel's page."
    )]
    Malformed(String),
}

/// Reads the panel's parameters from an entry's query string. IDs are letters, digits, `_`
/// and `-` only (every panel's IDs are), so nothing else a URL can carry is ever stored; an
/// optional parameter that is absent or blank is recorded as none, but a malformed one is
/// refused (a panel never sends one).
pub fn read_entry(
    params: &PanelParams,
    query: &HashMap<String, String>,
) -> Result<PanelEntry, EntryRefused> {
    let participant_id = match query.get(&params.id_param).map(|v| v.trim()) {
        None | Some("") => return Err(EntryRefused::MissingId(params.id_param.clone())),
        Some(id) => valid_id(id).ok_or_else(|| EntryRefused::Malformed(params.id_param.clone()))?,
    };
    let optional = |name: &Option<String>| -> Result<Option<String>, EntryRefused> {
        let Some(name) = name else { return Ok(None) };
        match query.get(name).map(|v| v.trim()) {
            None | Some("") => Ok(None),
            Some(value) => valid_id(value)
                .map(Some)
                .ok_or_else(|| EntryRefused::Malformed(name.clone())),
        }
    };
    Ok(PanelEntry {
        participant_id,
        panel_study_id: optional(&params.study_param)?,
        panel_session_id: optional(&params.session_param)?,
    })
}

fn valid_id(value: &str) -> Option<String> {
    let ok = !value.is_empty()
        && value.len() <= MAX_ID_LEN
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    ok.then(|| value.to_string())
}

/// The rater token of a participant: SHA-256 of the study's panel secret and the ID. Only its
/// hash is stored (like an invite token's), so the database alone cannot enter as anyone; the
/// secret never leaves the server.
pub fn participant_token(secret: &str, participant_id: &str) -> String {
    crate::store::sha256_hex(&format!("{secret}\n{participant_id}"))
}

/// The name a panel participant is shown under on staff pages (raters' names are unique per
/// study among working links, and invited names are typed by people, so the prefix keeps the
/// two apart).
pub fn rater_name(participant_id: &str) -> String {
    format!("panel {participant_id}")
}

/// Most places a panel link may have (a study's participants at a time).
pub const MAX_PLACES: i64 = 100_000;

/// Reads the places field: blank means no limit, else a whole number from 1.
pub fn parse_places(text: &str) -> Result<Option<i64>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    match text.parse::<i64>() {
        Ok(n) if (1..=MAX_PLACES).contains(&n) => Ok(Some(n)),
        _ => Err(format!(
            "places: \"{text}\" is not a whole number from 1 to {MAX_PLACES} (leave it empty for no limit)"
        )),
    }
}

/// Longest idle limit accepted (a week).
pub const MAX_IDLE_MINUTES: i64 = 7 * 24 * 60;

/// Reads the idle-limit field: blank means never, else whole minutes from 5 (shorter would
/// end the places of participants reading the instructions).
pub fn parse_idle_minutes(text: &str) -> Result<Option<i64>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    match text.parse::<i64>() {
        Ok(n) if (5..=MAX_IDLE_MINUTES).contains(&n) => Ok(Some(n)),
        _ => Err(format!(
            "idle limit: \"{text}\" is not a whole number of minutes from 5 to {MAX_IDLE_MINUTES} (leave it empty for none)"
        )),
    }
}

/// How the panel reports a participant who gave up their place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnedAs {
    /// The participant returned the study.
    Returned,
    /// The panel's time limit ran out.
    TimedOut,
}

impl ReturnedAs {
    /// Reads a status as panels write it (`RETURNED`, `TIMED-OUT`, `timed_out`, …); any
    /// other status is not a return.
    pub fn read(status: &str) -> Option<ReturnedAs> {
        match status
            .trim()
            .to_ascii_uppercase()
            .replace(['_', ' '], "-")
            .as_str()
        {
            "RETURNED" => Some(ReturnedAs::Returned),
            "TIMED-OUT" => Some(ReturnedAs::TimedOut),
            _ => None,
        }
    }

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReturnedAs::Returned => "returned",
            ReturnedAs::TimedOut => "timed_out",
        }
    }
}

/// A panel's submissions export, read: every participant ID in it, and those it reports as
/// returned or timed out.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Submissions {
    /// Every participant ID listed, in file order.
    pub participants: Vec<String>,
    /// The ones that gave their place up.
    pub returned: Vec<(String, ReturnedAs)>,
}

/// Reads a submissions CSV as Prolific exports it (a `Participant id` column and a `Status`
/// column whose `RETURNED` and `TIMED-OUT` rows gave their place up; other columns and
/// statuses are ignored; `participant_id` and `PROLIFIC_PID` are accepted as the ID's header).
/// Checked whole: a missing column, a broken line or a malformed ID refuses the file, naming
/// the line.
pub fn read_submissions(csv_bytes: &[u8]) -> Result<Submissions, String> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(csv_bytes);
    let headers = reader
        .headers()
        .map_err(|e| format!("the file is not a CSV file with a header line ({e})"))?
        .clone();
    let column = |names: &[&str]| {
        headers.iter().position(|h| {
            let h = h.trim().trim_start_matches('\u{feff}').to_ascii_lowercase();
            names.contains(&h.as_str())
        })
    };
    let (Some(id_at), Some(status_at)) = (
        column(&["participant id", "participant_id", "prolific_pid"]),
        column(&["status"]),
    ) else {
        return Err(
            "the file needs a \"Participant id\" column and a \"Status\" column, as the panel's submissions export has"
                .into(),
        );
    };
    let mut out = Submissions::default();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = record.map_err(|e| format!("line {line}: {e}"))?;
        let id = record.get(id_at).unwrap_or("").trim();
        let id = valid_id(id).ok_or_else(|| {
            format!("line {line}: \"{id}\" is not a participant ID (1 to {MAX_ID_LEN} letters, digits, _ or -)")
        })?;
        if let Some(how) = ReturnedAs::read(record.get(status_at).unwrap_or("")) {
            out.returned.push((id.clone(), how));
        }
        out.participants.push(id);
    }
    Ok(out)
}

/// One participant reported by a script through the JSON API.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct ReportedReturn {
    /// The panel's participant ID.
    pub participant_id: String,
    /// `returned` or `timed_out` (Prolific's `RETURNED` and `TIMED-OUT` too).
    pub status: String,
}

/// Reads returns reported through the JSON API: unlike the submissions export, every entry
/// must be a return (the message names the entry at fault).
pub fn read_reported_returns(reported: &[ReportedReturn]) -> Result<Submissions, String> {
    let mut out = Submissions::default();
    for (i, entry) in reported.iter().enumerate() {
        let id = valid_id(entry.participant_id.trim()).ok_or_else(|| {
            format!(
                "participants[{i}]: \"{}\" is not a participant ID (1 to {MAX_ID_LEN} letters, digits, _ or -)",
                entry.participant_id
            )
        })?;
        let how = ReturnedAs::read(&entry.status).ok_or_else(|| {
            format!(
                "participants[{i}]: the status \"{}\" is not returned or timed_out",
                entry.status
            )
        })?;
        out.participants.push(id.clone());
        out.returned.push((id, how));
    }
    Ok(out)
}

/// The ends of a study a participant can reach, each with its own completion code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompletionOutcome {
    /// Nothing is left for them to judge.
    Completed,
    /// They did not reach the qualification items' pass mark.
    ScreenedOut,
    /// They reached the study's cap on time spent on items.
    OutOfTime,
    /// They did not agree to the consent text.
    DeclinedConsent,
    /// They failed the silent gold items, in a study where that ends their participation.
    FailedQuality,
}

impl CompletionOutcome {
    /// Every outcome, in the order the admin page lists them.
    pub const ALL: [CompletionOutcome; 5] = [
        CompletionOutcome::Completed,
        CompletionOutcome::ScreenedOut,
        CompletionOutcome::FailedQuality,
        CompletionOutcome::OutOfTime,
        CompletionOutcome::DeclinedConsent,
    ];

    /// The stored name (and the form fields' prefix).
    pub fn as_str(self) -> &'static str {
        match self {
            CompletionOutcome::Completed => "completed",
            CompletionOutcome::ScreenedOut => "screened_out",
            CompletionOutcome::OutOfTime => "out_of_time",
            CompletionOutcome::DeclinedConsent => "declined_consent",
            CompletionOutcome::FailedQuality => "failed_quality",
        }
    }

    /// The stored name read back.
    pub fn parse(name: &str) -> Option<CompletionOutcome> {
        Self::ALL.into_iter().find(|o| o.as_str() == name)
    }

    /// How the admin page names it.
    pub fn label(self) -> &'static str {
        match self {
            CompletionOutcome::Completed => "Completed (nothing left to judge)",
            CompletionOutcome::ScreenedOut => {
                "Screened out (the comprehension check failed twice, or below the qualification pass mark)"
            }
            CompletionOutcome::OutOfTime => "Out of time (reached the cap on time on items)",
            CompletionOutcome::DeclinedConsent => "Declined consent",
            CompletionOutcome::FailedQuality => {
                "Failed quality (fewer than half of at least 3 silent gold items right, where that ends the study)"
            }
        }
    }
}

/// Where a panel participant ended up, as the approve/reject list needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParticipantRecord {
    /// The panel's participant ID.
    pub participant_id: String,
    /// They declined consent.
    pub declined_consent: bool,
    /// They failed the comprehension check on every attempt.
    pub failed_comprehension: bool,
    /// They did not reach the qualification items' pass mark.
    pub failed_screening: bool,
    /// `returned`, `timed_out` or `idle`, when their place ended early.
    pub returned: Option<String>,
    /// Study items answered (timeouts left out) and of those, right.
    pub answered: u64,
    /// Study items answered right.
    pub right: u64,
    /// Silent gold items answered (timeouts included) and of those, right.
    pub gold: crate::quality::QualityTally,
}

/// Study items a participant must have answered before the chance-level test can reject them.
pub const MIN_ANSWERS_FOR_REJECTION: u64 = 20;

/// The approve/reject list's decision for one participant: `approve`, `reject` (with the
/// quality check it failed), or `none` (the panel's own rules apply: they returned, were
/// screened out, declined consent, or have not answered yet), with the reason.
pub fn review_decision(p: &ParticipantRecord) -> (&'static str, String) {
    if p.declined_consent {
        return ("none", "declined consent".into());
    }
    if p.failed_comprehension {
        return ("none", "screened out: comprehension check".into());
    }
    if p.failed_screening {
        return ("none", "screened out: qualification items".into());
    }
    if let Some(how) = &p.returned {
        return ("none", format!("place ended: {how}"));
    }
    if crate::quality::fails_gold(p.gold) {
        return (
            "reject",
            format!(
                "failed quality: {} of {} gold items right",
                p.gold.right, p.gold.answered
            ),
        );
    }
    if p.answered >= MIN_ANSWERS_FOR_REJECTION
        && crate::metrics::is_chance_level(p.right, p.answered, crate::labels::CHANCE_ALPHA)
    {
        return (
            "reject",
            format!(
                "failed quality: {} of {} answers right, not distinguishable from guessing",
                p.right, p.answered
            ),
        );
    }
    if p.answered == 0 {
        return ("none", "no answered items yet".into());
    }
    (
        "approve",
        format!("{} of {} answers right", p.right, p.answered),
    )
}

/// The approve/reject list as CSV (`participant_id,decision,reason`).
pub fn review_csv(records: &[ParticipantRecord]) -> Result<Vec<u8>, csv::Error> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(["participant_id", "decision", "reason"])?;
    for record in records {
        let (decision, reason) = review_decision(record);
        writer.write_record([record.participant_id.as_str(), decision, reason.as_str()])?;
    }
    writer.into_inner().map_err(|e| e.into_error().into())
}

/// Longest completion code accepted (Prolific's are 8 characters).
pub const MAX_CODE_LEN: usize = 32;
/// Longest redirect URL accepted.
pub const MAX_URL_LEN: usize = 500;

/// What a participant reaching an outcome is given: the code, and where to take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The completion code the panel expects.
    pub code: String,
    /// The panel's completion URL; `{code}` in it stands for the code.
    pub redirect_url: Option<String>,
}

impl Completion {
    /// Reads one outcome's fields as an admin typed them: both blank means no code for that
    /// outcome; a URL needs a code; a code is 1 to 32 letters, digits, `_` or `-`; a URL is
    /// http(s), without spaces. The message names the outcome.
    pub fn parse(
        outcome: CompletionOutcome,
        code: &str,
        redirect_url: &str,
    ) -> Result<Option<Completion>, String> {
        let (code, url) = (code.trim(), redirect_url.trim());
        let what = outcome.label();
        if code.is_empty() {
            return if url.is_empty() {
                Ok(None)
            } else {
                Err(format!("{what}: a redirect URL needs a completion code"))
            };
        }
        if code.len() > MAX_CODE_LEN
            || !code
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(format!(
                "{what}: the code must be 1 to {MAX_CODE_LEN} letters, digits, _ or - (\"{code}\" is not)"
            ));
        }
        let redirect_url = if url.is_empty() {
            None
        } else {
            let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
            if !scheme_ok || url.len() > MAX_URL_LEN || url.chars().any(char::is_whitespace) {
                return Err(format!(
                    "{what}: the redirect URL must start with https:// (or http://), have no spaces and at most {MAX_URL_LEN} characters"
                ));
            }
            Some(url.to_string())
        };
        Ok(Some(Completion {
            code: code.to_string(),
            redirect_url,
        }))
    }

    /// The address to send the participant to, with the code in place of `{code}`.
    pub fn redirect(&self) -> Option<String> {
        self.redirect_url
            .as_ref()
            .map(|url| url.replace("{code}", &self.code))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn prolific_entries_are_read() {
        let entry = read_entry(
            &PanelParams::default(),
            &query(&[
                ("PROLIFIC_PID", "5f1a2b3c4d5e6f7a8b9c0d1e"),
                ("STUDY_ID", "65aa"),
                ("SESSION_ID", "abc-DEF_9"),
            ]),
        )
        .unwrap();
        assert_eq!(entry.participant_id, "5f1a2b3c4d5e6f7a8b9c0d1e");
        assert_eq!(entry.panel_study_id.as_deref(), Some("65aa"));
        assert_eq!(entry.panel_session_id.as_deref(), Some("abc-DEF_9"));
    }

    #[test]
    fn optional_ids_may_be_absent_but_not_malformed() {
        let params = PanelParams::default();
        let entry = read_entry(&params, &query(&[("PROLIFIC_PID", "p1")])).unwrap();
        assert_eq!(entry.panel_study_id, None);
        assert_eq!(entry.panel_session_id, None);
        assert_eq!(
            read_entry(
                &params,
                &query(&[("PROLIFIC_PID", "p1"), ("SESSION_ID", "a b")])
            ),
            Err(EntryRefused::Malformed("SESSION_ID".into()))
        );
    }

    #[test]
    fn missing_and_malformed_participant_ids_are_refused() {
        let params = PanelParams::default();
        for q in [
            query(&[]),
            query(&[("PROLIFIC_PID", "  ")]),
            query(&[("pid", "x")]),
        ] {
            assert_eq!(
                read_entry(&params, &q),
                Err(EntryRefused::MissingId("PROLIFIC_PID".into()))
            );
        }
        let long = "a".repeat(MAX_ID_LEN + 1);
        for bad in [
            "<script>",
            "a/b",
            "ü",
            "a b",
            "{{%PROLIFIC_PID%}}",
            long.as_str(),
        ] {
            assert_eq!(
                read_entry(&params, &query(&[("PROLIFIC_PID", bad)])),
                Err(EntryRefused::Malformed("PROLIFIC_PID".into())),
                "{bad}"
            );
        }
        let longest = "a".repeat(MAX_ID_LEN);
        assert!(read_entry(&params, &query(&[("PROLIFIC_PID", &longest)])).is_ok());
        // The message says what to do, in the participant's words.
        let text = EntryRefused::MissingId("PROLIFIC_PID".into()).to_string();
        assert!(text.contains("participant ID (PROLIFIC_PID)"), "{text}");
    }

    #[test]
    fn other_panels_name_their_own_parameters() {
        let params = PanelParams::parse("participantId", "", " assignmentId ").unwrap();
        assert_eq!(params.study_param, None);
        assert_eq!(params.session_param.as_deref(), Some("assignmentId"));
        let entry = read_entry(
            &params,
            &query(&[("participantId", "CR-123"), ("assignmentId", "77")]),
        )
        .unwrap();
        assert_eq!(entry.participant_id, "CR-123");
        assert_eq!(entry.panel_session_id.as_deref(), Some("77"));
    }

    #[test]
    fn parameter_names_are_checked() {
        assert!(
            PanelParams::parse("", "", "")
                .unwrap_err()
                .contains("participant ID parameter")
        );
        assert!(
            PanelParams::parse("PID", "a-b", "")
                .unwrap_err()
                .contains("study ID parameter")
        );
        assert!(
            PanelParams::parse("PID", "", &"x".repeat(41))
                .unwrap_err()
                .contains("at most 40")
        );
        assert!(
            PanelParams::parse("PID", "PID", "")
                .unwrap_err()
                .contains("given twice")
        );
    }

    #[test]
    fn the_entry_url_has_prolific_placeholders() {
        assert_eq!(
            PanelParams::default().entry_url("https://rate.example.org/", "k3y"),
            "https://rate.example.org/s/k3y?PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}"
        );
        let only_id = PanelParams::parse("pid", "", "").unwrap();
        assert_eq!(
            only_id.entry_url("http://127.0.0.1:8080", "k"),
            "http://127.0.0.1:8080/s/k?pid={{%pid%}}"
        );
    }

    #[test]
    fn tokens_depend_on_secret_and_id() {
        let a = participant_token("s1", "p1");
        assert_eq!(a, participant_token("s1", "p1"));
        assert_ne!(a, participant_token("s1", "p2"));
        assert_ne!(a, participant_token("s2", "p1"));
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn completion_codes_are_checked_per_outcome() {
        let done = CompletionOutcome::Completed;
        assert_eq!(Completion::parse(done, " ", ""), Ok(None));
        let with_url = Completion::parse(
            done,
            "C1A2B3",
            "https://app.prolific.com/submissions/complete?cc={code}",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            with_url.redirect().as_deref(),
            Some("https://app.prolific.com/submissions/complete?cc=C1A2B3")
        );
        let plain = Completion::parse(done, "C1A2B3", "").unwrap().unwrap();
        assert_eq!(plain.redirect(), None);
        let url_alone = Completion::parse(done, "", "https://x.org").unwrap_err();
        assert!(url_alone.starts_with("Completed"), "{url_alone}");
        assert!(
            Completion::parse(done, "a b", "")
                .unwrap_err()
                .contains("the code must be")
        );
        assert!(Completion::parse(done, &"x".repeat(33), "").is_err());
        for bad in ["javascript:alert(1)", "ftp://x.org", "https://x.org/a b"] {
            let refused = Completion::parse(CompletionOutcome::OutOfTime, "T1", bad).unwrap_err();
            assert!(refused.starts_with("Out of time"), "{refused}");
        }
        for outcome in CompletionOutcome::ALL {
            assert_eq!(CompletionOutcome::parse(outcome.as_str()), Some(outcome));
        }
    }

    #[test]
    fn places_are_a_whole_number_or_none() {
        assert_eq!(parse_places(" "), Ok(None));
        assert_eq!(parse_places("75"), Ok(Some(75)));
        for bad in ["0", "-3", "1.5", "many", "100001"] {
            assert!(
                parse_places(bad).unwrap_err().starts_with("places: "),
                "{bad}"
            );
        }
    }

    #[test]
    fn review_decisions_follow_the_quality_outcomes() {
        let base = ParticipantRecord {
            participant_id: "p".into(),
            answered: 30,
            right: 24,
            ..Default::default()
        };
        assert_eq!(review_decision(&base).0, "approve");
        assert_eq!(review_decision(&base).1, "24 of 30 answers right");
        // Guessing over enough answers is rejected; over a few it is not judged.
        let guessing = ParticipantRecord {
            right: 15,
            ..base.clone()
        };
        assert_eq!(review_decision(&guessing).0, "reject");
        let few = ParticipantRecord {
            answered: 10,
            right: 5,
            ..base.clone()
        };
        assert_eq!(review_decision(&few).0, "approve");
        // Gold: fewer than half right over at least 3 is rejected.
        let gold = |answered, right| ParticipantRecord {
            gold: crate::quality::QualityTally { answered, right },
            ..base.clone()
        };
        assert_eq!(
            review_decision(&gold(4, 1)),
            ("reject", "failed quality: 1 of 4 gold items right".into())
        );
        assert_eq!(review_decision(&gold(4, 2)).0, "approve");
        assert_eq!(review_decision(&gold(2, 0)).0, "approve");
        for (record, reason) in [
            (
                ParticipantRecord {
                    declined_consent: true,
                    ..base.clone()
                },
                "declined consent",
            ),
            (
                ParticipantRecord {
                    failed_comprehension: true,
                    ..base.clone()
                },
                "screened out: comprehension check",
            ),
            (
                ParticipantRecord {
                    returned: Some("timed_out".into()),
                    ..gold(4, 0)
                },
                "place ended: timed_out",
            ),
            (
                ParticipantRecord {
                    answered: 0,
                    right: 0,
                    ..base.clone()
                },
                "no answered items yet",
            ),
        ] {
            assert_eq!(review_decision(&record), ("none", reason.to_string()));
        }
        let csv = String::from_utf8(review_csv(&[base]).unwrap()).unwrap();
        assert_eq!(
            csv,
            "participant_id,decision,reason\np,approve,24 of 30 answers right\n"
        );
    }

    #[test]
    fn idle_limits_are_whole_minutes_or_none() {
        assert_eq!(parse_idle_minutes(""), Ok(None));
        assert_eq!(parse_idle_minutes(" 30 "), Ok(Some(30)));
        for bad in ["4", "0", "-1", "2.5", "soon", "10081"] {
            assert!(
                parse_idle_minutes(bad)
                    .unwrap_err()
                    .starts_with("idle limit: "),
                "{bad}"
            );
        }
    }

    #[test]
    fn prolific_submissions_exports_are_read() {
        let csv = "\u{feff}Submission id,Participant id,Status,Started at\n\
                   s1,5f1a,APPROVED,2026-01-01\n\
                   s2,p-2,RETURNED,2026-01-01\n\
                   s3,p_3,TIMED-OUT,2026-01-01\n\
                   s4,p4,AWAITING REVIEW,2026-01-01\n";
        let read = read_submissions(csv.as_bytes()).unwrap();
        assert_eq!(read.participants, ["5f1a", "p-2", "p_3", "p4"]);
        assert_eq!(
            read.returned,
            [
                ("p-2".to_string(), ReturnedAs::Returned),
                ("p_3".to_string(), ReturnedAs::TimedOut)
            ]
        );
        let scripted = read_submissions(b"participant_id,status\nx1,timed_out\n").unwrap();
        assert_eq!(
            scripted.returned,
            [("x1".to_string(), ReturnedAs::TimedOut)]
        );
    }

    #[test]
    fn returns_reported_by_a_script_are_read_whole() {
        let entry = |id: &str, status: &str| ReportedReturn {
            participant_id: id.into(),
            status: status.into(),
        };
        let read =
            read_reported_returns(&[entry("p1", "returned"), entry("p2", "TIMED-OUT")]).unwrap();
        assert_eq!(read.participants, ["p1", "p2"]);
        assert_eq!(
            read.returned,
            [
                ("p1".to_string(), ReturnedAs::Returned),
                ("p2".to_string(), ReturnedAs::TimedOut)
            ]
        );
        let approved =
            read_reported_returns(&[entry("p1", "returned"), entry("p2", "APPROVED")]).unwrap_err();
        assert!(
            approved.starts_with("participants[1]: the status"),
            "{approved}"
        );
        let bad_id = read_reported_returns(&[entry("a b", "returned")]).unwrap_err();
        assert!(bad_id.starts_with("participants[0]: \"a b\""), "{bad_id}");
    }

    #[test]
    fn broken_submissions_files_are_refused_whole() {
        let no_status = read_submissions(b"Participant id,State\np1,RETURNED\n").unwrap_err();
        assert!(no_status.contains("\"Status\" column"), "{no_status}");
        let bad_id =
            read_submissions(b"Participant id,Status\np1,RETURNED\nbad id,RETURNED\n").unwrap_err();
        assert!(bad_id.starts_with("line 3: \"bad id\""), "{bad_id}");
        let ragged = read_submissions(b"Participant id,Status\np1,RETURNED,extra\n").unwrap_err();
        assert!(ragged.starts_with("line 2: "), "{ragged}");
    }
}

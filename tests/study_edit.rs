//! Duplicating and editing a study, on SQLite and PostgreSQL, through the pages as a browser
//! submits them: Duplicate pre-fills New study and makes an independent study; Edit changes
//! anything while nothing is collected, afterwards only the name, workload cap and breaks
//! (the rest is read-only with the reason, and a forged change is refused whole). Also: the
//! `study edit` command, confirmations on destructive forms, and `<time>` elements.

mod common;

use axum::http::StatusCode;
use common::{Backend, TestApp};
use legibility::domain::{StudyStatus, UserRole};
use legibility::quality::RaterProtocol;
use uuid::Uuid;

/// Undoes the HTML escaping askama applies to attribute values.
fn unescape(text: &str) -> String {
    text.replace("&#34;", "\"")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#60;", "<")
        .replace("&lt;", "<")
        .replace("&#62;", ">")
        .replace("&gt;", ">")
        .replace("&#38;", "&")
        .replace("&amp;", "&")
}

/// The value of attribute `name` in a tag's text, if present.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let needle = format!(" {name}=\"");
    let start = tag.find(&needle)? + needle.len();
    let end = tag[start..].find('"')? + start;
    Some(unescape(&tag[start..end]))
}

/// What a browser submits for the form with id `form_id` as the page shows it: text, number
/// and hidden inputs with their values, ticked checkboxes and radios, selected options.
fn submitted_fields(page: &str, form_id: &str) -> Vec<(String, String)> {
    let start = page
        .find(&format!("id=\"{form_id}\""))
        .unwrap_or_else(|| panic!("no form #{form_id} in:\n{page}"));
    let form = &page[start..start + page[start..].find("</form>").unwrap()];
    let mut fields = Vec::new();
    for piece in form.split('<').skip(1) {
        let tag = &piece[..piece.find('>').unwrap_or(piece.len())];
        if let Some(rest) = tag.strip_prefix("input ") {
            let tag = format!(" {rest}");
            let Some(name) = attribute(&tag, "name") else {
                continue;
            };
            let kind = attribute(&tag, "type").unwrap_or_else(|| "text".into());
            let value = attribute(&tag, "value").unwrap_or_default();
            let ticked = tag.contains(" checked");
            match kind.as_str() {
                "checkbox" | "radio" if !ticked => {}
                "file" | "submit" => {}
                _ => fields.push((name, value)),
            }
        }
    }
    // Selects: the selected option (or the first).
    for select in form.split("<select ").skip(1) {
        let name = attribute(&format!(" {select}"), "name").unwrap();
        let body = &select[..select.find("</select>").unwrap()];
        let options: Vec<&str> = body.split("<option ").skip(1).collect();
        let chosen = options
            .iter()
            .find(|o| o[..o.find('>').unwrap()].contains(" selected"))
            .or(options.first())
            .unwrap();
        fields.push((name, attribute(&format!(" {chosen}"), "value").unwrap()));
    }
    fields
}

fn with(fields: &[(String, String)], name: &str, value: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> =
        fields.iter().filter(|(n, _)| n != name).cloned().collect();
    out.push((name.to_string(), value.to_string()));
    out
}

fn as_refs(fields: &[(String, String)]) -> Vec<(&str, &str)> {
    fields
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect()
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    fields
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// The study id a create or edit redirected to.
fn study_of(location: Option<&str>) -> Uuid {
    let location = location.expect("a redirect");
    Uuid::parse_str(location.trim_start_matches("/studies/")).expect("a study page")
}

async fn duplicate_prefills_new_study_and_makes_an_independent_study(backend: Backend) {
    let app = TestApp::start(backend).await;
    let protocol = RaterProtocol {
        practice_items: 1,
        screening_items: 2,
        screening_pass_accuracy: 0.5,
        max_rater_ms: 2 * 3_600_000,
        break_every: 3,
        ..RaterProtocol::default()
    };
    let fixture = app.fixture_with_protocol(12, 6, protocol).await;
    let original = app.store().study_setup(fixture.study_id).await.unwrap();
    // The original has collected data: a rater was served a practice item.
    let tokens = app.invite(fixture.study_id, 1).await;
    let mut rater = app.rater_client(&tokens[0]).await;
    rater.get("/api/rater/item").await;
    assert!(
        app.store()
            .study_setup(fixture.study_id)
            .await
            .unwrap()
            .collected
            .any()
    );

    let mut researcher = app.staff_client("rita", UserRole::Researcher).await;
    let study_page = researcher
        .get(&format!("/studies/{}", fixture.study_id))
        .await;
    assert!(
        study_page
            .body
            .contains(&format!("href=\"/studies/new?from={}\"", fixture.study_id)),
        "no Duplicate link"
    );
    let form_page = researcher
        .get(&format!("/studies/new?from={}", fixture.study_id))
        .await;
    assert_eq!(form_page.status, StatusCode::OK, "{}", form_page.body);
    assert!(form_page.body.contains("id=\"duplicate-note\""));
    let fields = submitted_fields(&form_page.body, "study-form");
    let copy_name = format!("{} (copy)", original.study.name);
    assert_eq!(field(&fields, "name"), vec![copy_name.as_str()]);
    assert_eq!(field(&fields, "time_limit_s"), vec!["45"]);
    assert_eq!(field(&fields, "judgements_per_solution"), vec!["1"]);
    assert_eq!(field(&fields, "max_problems"), vec!["6"]);
    assert_eq!(field(&fields, "practice_items"), vec!["1"]);
    assert_eq!(field(&fields, "screening_items"), vec!["2"]);
    assert_eq!(field(&fields, "screening_pass_percent"), vec!["50"]);
    assert_eq!(field(&fields, "max_hours"), vec!["2"]);
    assert_eq!(field(&fields, "break_every"), vec!["3"]);
    assert_eq!(field(&fields, "source"), vec!["existing"]);
    assert_eq!(
        field(&fields, "problem_set_id"),
        vec![original.spec.problem_set_id.to_string().as_str()]
    );
    assert_eq!(field(&fields, "role"), vec!["helpful", "sneaky"]);
    assert_eq!(field(&fields, "checkpoint").len(), 1);

    // Submitting the pre-filled form as it is creates the copy.
    let created = researcher.post_form("/studies", &as_refs(&fields)).await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    let copy_id = study_of(created.location());
    assert_ne!(copy_id, fixture.study_id);
    let copy = app.store().study_setup(copy_id).await.unwrap();
    assert_eq!(copy.study.name, copy_name);
    let mut expected = original.spec.clone();
    expected.name = copy_name.clone();
    assert_eq!(copy.spec, expected, "same settings, same selection");
    assert_eq!(copy.collected, Default::default(), "a fresh study");
    let (a, b) = (
        app.store().study_progress(fixture.study_id).await.unwrap(),
        app.store().study_progress(copy_id).await.unwrap(),
    );
    assert_eq!((a.solutions, a.wanted), (b.solutions, b.wanted));
    assert_eq!((b.raters, b.judged), (0, 0));
    // Its own quality items, as many as the original's.
    assert_eq!(copy.study.protocol, original.study.protocol);
    // The original's rater has no link to the copy; the original is unchanged.
    assert_eq!(
        app.store()
            .study_setup(fixture.study_id)
            .await
            .unwrap()
            .spec,
        original.spec
    );

    // A second duplicate gets the next free name.
    let again = researcher
        .get(&format!("/studies/new?from={}", fixture.study_id))
        .await;
    let fields = submitted_fields(&again.body, "study-form");
    assert_eq!(
        field(&fields, "name"),
        vec![format!("{} (copy 2)", original.study.name).as_str()]
    );
    assert_eq!(
        researcher
            .get(&format!("/studies/new?from={}", Uuid::nil()))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}
on_both_backends!(duplicate_prefills_new_study_and_makes_an_independent_study);

async fn edit_changes_everything_until_data_is_collected_then_only_what_is_safe(backend: Backend) {
    let app = TestApp::start(backend).await;
    let fixture = app.fixture(6, 1, 2, 45_000).await;
    let study = fixture.study_id;
    let edit = format!("/studies/{study}/edit");
    let mut researcher = app.staff_client("rita", UserRole::Researcher).await;

    // Nothing collected: everything is an input, and a new selection is chosen.
    let page = researcher.get(&edit).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(!page.body.contains("cannot change"), "{}", page.body);
    let fields = submitted_fields(&page.body, "study-form");
    assert!(field(&fields, "source").is_empty(), "no generation choice");
    let mut changed = with(&fields, "time_limit_s", "30");
    changed = with(&changed, "judgements_per_solution", "1");
    changed.retain(|(n, v)| !(n == "role" && v == "sneaky"));
    let saved = researcher.post_form(&edit, &as_refs(&changed)).await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    assert_eq!(saved.location(), Some(format!("/studies/{study}").as_str()));
    let setup = app.store().study_setup(study).await.unwrap();
    assert_eq!(setup.study.time_limit_ms, 30_000);
    assert_eq!(setup.study.judgements_per_solution, 1);
    assert_eq!(
        setup.spec.roles,
        vec![legibility::domain::ProverRole::Helpful]
    );
    let progress = app.store().study_progress(study).await.unwrap();
    assert_eq!((progress.solutions, progress.wanted), (6, 6));

    // A rater is served one item: from now on only name, workload cap and breaks change.
    let tokens = app.invite(study, 1).await;
    let mut rater = app.rater_client(&tokens[0]).await;
    let item = rater.get("/api/rater/item").await.json();
    assert_eq!(item["status"], "item");
    let page = researcher.get(&edit).await;
    assert!(page.body.contains("id=\"design-frozen\""), "{}", page.body);
    assert!(page.body.contains("id=\"selection-frozen\""));
    assert!(page.body.contains("raters have been served 1 study items"));
    assert!(
        !page.body.contains("type=\"number\" min=\"0.5\""),
        "no time limit input"
    );
    let fields = submitted_fields(&page.body, "study-form");

    // A forged change of a frozen setting is refused whole: the name does not change either.
    let forged = with(&with(&fields, "time_limit_s", "20"), "name", "renamed");
    let refused = researcher.post_form(&edit, &as_refs(&forged)).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert!(
        refused
            .body
            .contains("the time limit can no longer change: raters have been served 1"),
        "{}",
        refused.body
    );
    let forged = with(&fields, "role", "sneaky");
    let refused = researcher.post_form(&edit, &as_refs(&forged)).await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert!(refused.body.contains("the roles can no longer change"));
    let unchanged = app.store().study_setup(study).await.unwrap();
    assert_eq!(unchanged.spec, setup.spec);

    // What cannot change collected data still changes.
    let mut safe = with(&fields, "name", "pilot, second wave");
    safe = with(&safe, "break_every", "4");
    safe = with(&safe, "max_hours", "1.5");
    let saved = researcher.post_form(&edit, &as_refs(&safe)).await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let after = app.store().study_setup(study).await.unwrap();
    assert_eq!(after.study.name, "pilot, second wave");
    assert_eq!(after.study.protocol.break_every, 4);
    assert_eq!(after.study.protocol.max_rater_ms, 5_400_000);
    assert_eq!(after.study.time_limit_ms, 30_000);
    assert_eq!(after.collected.items_served, 1);
    assert_eq!(
        app.store().study_progress(study).await.unwrap().in_progress,
        1,
        "the served item is untouched"
    );

    // Bad input: a clear message, nothing written.
    let bad = researcher
        .post_form(&edit, &as_refs(&with(&safe, "max_hours", "0")))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    assert!(bad.body.contains("workload cap"), "{}", bad.body);
    let other = app.fixture(2, 1, 1, 45_000).await;
    let other_name = app.store().study(other.study_id).await.unwrap().name;
    let clash = researcher
        .post_form(&edit, &as_refs(&with(&safe, "name", &other_name)))
        .await;
    assert_eq!(clash.status, StatusCode::CONFLICT, "{}", clash.body);
    assert!(clash.body.contains("already exists"));
    assert_eq!(
        app.store().study(study).await.unwrap().name,
        "pilot, second wave"
    );
}
on_both_backends!(edit_changes_everything_until_data_is_collected_then_only_what_is_safe);

/// The `study edit` command applies the same rule and opens or closes the study.
async fn the_study_edit_command_follows_the_same_rule(backend: Backend) {
    let app = TestApp::start(backend).await;
    let fixture = app.fixture(3, 1, 1, 45_000).await;
    let study = fixture.study_id.to_string();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_legibility"))
            .args(["study", "edit", "--study", &study])
            .args(args)
            .env("DATABASE_URL", &app.db.url)
            .env("RUST_LOG", "warn")
            .output()
            .expect("run legibility study edit")
    };
    let out = run(&["--time-limit-secs", "20", "--break-every", "2", "--close"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("changed break interval, time limit, status (closed)"),
        "{stdout}"
    );
    let after = app.store().study(fixture.study_id).await.unwrap();
    assert_eq!(
        (
            after.time_limit_ms,
            after.protocol.break_every,
            after.status
        ),
        (20_000, 2, StudyStatus::Closed)
    );
    app.store()
        .set_study_status(fixture.study_id, StudyStatus::Open)
        .await
        .unwrap();
    let tokens = app.invite(fixture.study_id, 1).await;
    let mut rater = app.rater_client(&tokens[0]).await;
    assert_eq!(rater.get("/api/rater/item").await.json()["status"], "item");
    let out = run(&["--judgements", "2", "--name", "never written"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the judgements per solution can no longer change"),
        "{stderr}"
    );
    assert_ne!(
        app.store().study(fixture.study_id).await.unwrap().name,
        "never written"
    );
}
on_both_backends!(the_study_edit_command_follows_the_same_rule);

/// Every destructive form asks first (the attribute `static/staff.js` acts on), naming what
/// happens; times are `<time>` elements with a readable UTC text.
async fn destructive_forms_ask_for_confirmation(backend: Backend) {
    let app = TestApp::start(backend).await;
    let fixture = app.fixture(3, 1, 1, 45_000).await;
    let tokens = app.invite(fixture.study_id, 1).await;
    app.rater_client(&tokens[0])
        .await
        .get("/api/rater/item")
        .await;
    app.store()
        .enqueue_verifier_scoring(fixture.study_id, None, None, app.now())
        .await
        .unwrap();
    let mut admin = app.staff_client("ada", UserRole::Admin).await;
    let study = admin.get(&format!("/studies/{}", fixture.study_id)).await;
    let jobs = admin.get("/admin/jobs").await;
    let forms = |page: &str| -> Vec<String> {
        page.split("<form ")
            .skip(1)
            .map(|f| f[..f.find('>').unwrap()].to_string())
            .collect()
    };
    let destructive = [
        (&study.body, "/revoke\"", "Revoke rater 0's link?"),
        (&study.body, "/status\"", "Close the study"),
        (&jobs.body, "/cancel\"", "Cancel this verifier_scoring job?"),
    ];
    for (page, action, question) in destructive {
        let found: Vec<String> = forms(page)
            .into_iter()
            .filter(|f| f.contains(action))
            .collect();
        assert!(!found.is_empty(), "no form posting to …{action}");
        for form in found {
            let asked = attribute(&format!(" {form}"), "data-confirm")
                .unwrap_or_else(|| panic!("no data-confirm on {form}"));
            assert!(asked.starts_with(question), "{asked}");
        }
    }
    assert!(
        study
            .body
            .contains("<script src=\"/static/staff.js\" defer></script>")
    );
    assert!(jobs.body.contains("<time datetime=\""));
    assert!(jobs.body.contains(" UTC</time>"));
    assert!(
        study.body.contains("<time datetime=\""),
        "the rater's start"
    );
    let script = admin.get("/static/staff.js").await;
    assert_eq!(script.status, StatusCode::OK);
    assert!(script.body.contains("data-confirm"));
}
on_both_backends!(destructive_forms_ask_for_confirmation);

/// A generated study: Duplicate pre-fills "generate" with the job's provers, sampling and
/// seed; Edit keeps the job's selection read-only but changes the time limit while nothing is
/// collected.
async fn a_generated_study_duplicates_with_its_generation_settings(backend: Backend) {
    use legibility::domain::CheckpointKind;
    use legibility::ml::sampling::SamplingParams;
    use legibility::store::studies::StudySpec;
    use legibility::worker::generation::{GenerationRequest, create_generated_study};

    let app = TestApp::start(backend).await;
    let fixture = app.fixture(4, 1, 1, 45_000).await;
    let set = app
        .store()
        .study_setup(fixture.study_id)
        .await
        .unwrap()
        .spec
        .problem_set_id;
    let prover = app
        .store()
        .register_model_checkpoint(
            CheckpointKind::Prover,
            "gen-prover",
            1,
            "prover-tiny",
            serde_json::json!({}),
            app.now(),
        )
        .await
        .unwrap();
    let spec = StudySpec {
        name: "generated".into(),
        time_limit_ms: 45_000,
        judgements_per_solution: 1,
        reclaim_grace_ms: 15_000,
        problem_set_id: set,
        checkpoint_ids: vec![prover],
        roles: vec![],
        max_problems: Some(3),
        protocol: RaterProtocol::default(),
        answers: Default::default(),
        time_limits: Default::default(),
    };
    let request = GenerationRequest {
        checkpoint_ids: vec![prover],
        roles: vec![],
        samples_per_role: 2,
        sampling: SamplingParams {
            temperature: 0.5,
            ..SamplingParams::default()
        },
        seed: Some(7),
    };
    let (study, _job) = create_generated_study(app.store(), &spec, request, None, app.now())
        .await
        .unwrap();
    let mut researcher = app.staff_client("rita", UserRole::Researcher).await;

    let page = researcher
        .get(&format!("/studies/new?from={}", study.id))
        .await;
    let fields = submitted_fields(&page.body, "study-form");
    assert_eq!(field(&fields, "source"), vec!["generate"]);
    assert_eq!(
        field(&fields, "checkpoint"),
        vec![prover.to_string().as_str()]
    );
    assert_eq!(field(&fields, "role"), vec!["helpful", "sneaky"]);
    assert_eq!(field(&fields, "max_problems"), vec!["3"]);
    assert_eq!(field(&fields, "samples_per_role"), vec!["2"]);
    assert_eq!(field(&fields, "temperature"), vec!["0.5"]);
    assert_eq!(field(&fields, "seed"), vec!["7"]);

    let edit = format!("/studies/{}/edit", study.id);
    let page = researcher.get(&edit).await;
    assert!(
        page.body.contains("id=\"selection-frozen\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("a generation job writes this study"));
    assert!(!page.body.contains("id=\"design-frozen\""));
    let fields = submitted_fields(&page.body, "study-form");
    let saved = researcher
        .post_form(&edit, &as_refs(&with(&fields, "time_limit_s", "20")))
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    assert_eq!(
        app.store().study(study.id).await.unwrap().time_limit_ms,
        20_000
    );
    let refused = researcher
        .post_form(&edit, &as_refs(&with(&fields, "max_problems", "2")))
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert!(
        refused
            .body
            .contains("the problems can no longer change: a generation job"),
        "{}",
        refused.body
    );
}
on_both_backends!(a_generated_study_duplicates_with_its_generation_settings);

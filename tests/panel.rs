//! Panel entry (issue 20, part 1): participants enter a study through its one panel link with
//! their panel IDs, resume as the same rater in any browser, and every bad entry gets a clear
//! page and writes nothing; many participants entering at once become exactly one rater each.

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use common::{Backend, Client, TestApp};
use legibility::domain::{StudyStatus, UserRole};
use legibility::quality::RaterProtocol;
use tower::ServiceExt;
use uuid::Uuid;

/// Opens the study's panel link with the default (Prolific) names through the admin page and
/// returns the link's secret part.
async fn open_panel(app: &TestApp, admin: &mut Client<'_>, study: Uuid) -> String {
    let opened = admin
        .post_form(
            &format!("/studies/{study}/panel"),
            &[
                ("id_param", "PROLIFIC_PID"),
                ("study_param", "STUDY_ID"),
                ("session_param", "SESSION_ID"),
            ],
        )
        .await;
    assert_eq!(opened.status, StatusCode::SEE_OTHER, "{}", opened.body);
    app.store()
        .study_panel(study)
        .await
        .unwrap()
        .expect("the panel link is open")
        .link
}

async fn participants(app: &TestApp, study: Uuid) -> i64 {
    app.store()
        .study_panel(study)
        .await
        .unwrap()
        .map_or(0, |p| p.participants)
}

async fn current_item(client: &mut Client<'_>) -> serde_json::Value {
    let item = client.get("/api/rater/item").await;
    assert_eq!(item.status, StatusCode::OK, "{}", item.body);
    item.json()
}

async fn participants_enter_resume_and_bad_entries_are_refused(backend: Backend) {
    let app = TestApp::start(backend).await;
    let fixture = app.fixture(6, 1, 1, 45_000).await;
    let study = fixture.study_id;
    let mut admin = app.staff_client("ada", UserRole::Admin).await;

    // The admin page: bad names are refused with the field named, nothing opened.
    let refused = admin
        .post_form(
            &format!("/studies/{study}/panel"),
            &[
                ("id_param", "PROLIFIC PID"),
                ("study_param", ""),
                ("session_param", ""),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused
            .body
            .contains("participant ID parameter: only letters"),
        "{}",
        refused.body
    );
    assert!(app.store().study_panel(study).await.unwrap().is_none());
    let link = open_panel(&app, &mut admin, study).await;
    let page = admin.get(&format!("/studies/{study}/panel")).await;
    let url = format!(
        "http://lab.test/s/{link}?PROLIFIC_PID={{{{%PROLIFIC_PID%}}}}&#38;STUDY_ID={{{{%STUDY_ID%}}}}&#38;SESSION_ID={{{{%SESSION_ID%}}}}"
    );
    assert!(page.body.contains(&url), "{url} not in {}", page.body);
    assert!(
        admin
            .get(&format!("/studies/{study}"))
            .await
            .body
            .contains("/panel\" id=\"panel-link\"")
    );

    // A participant enters and gets an item.
    let entry = |id: &str, session: &str| {
        format!("/s/{link}?PROLIFIC_PID={id}&STUDY_ID=65f0aa&SESSION_ID={session}")
    };
    let mut first_browser = app.client();
    let entered = first_browser
        .get(&entry("5f1a2b3c4d5e6f7a8b9c0d1e", "s1"))
        .await;
    assert_eq!(entered.status, StatusCode::SEE_OTHER, "{}", entered.body);
    assert_eq!(entered.location(), Some("/rate"));
    let item = current_item(&mut first_browser).await;
    assert_eq!(item["status"], "item");

    // The same ID in another browser is the same rater, on the same running item.
    let mut second_browser = app.client();
    let again = second_browser
        .get(&entry("5f1a2b3c4d5e6f7a8b9c0d1e", "s2"))
        .await;
    assert_eq!(again.status, StatusCode::SEE_OTHER, "{}", again.body);
    let resumed = current_item(&mut second_browser).await;
    assert_eq!(resumed["assignment_id"], item["assignment_id"]);
    assert_eq!(participants(&app, study).await, 1);
    let answered = second_browser
        .post_json(
            "/api/rater/judgements",
            &serde_json::json!({"assignment_id": item["assignment_id"], "verdict": "correct"}),
        )
        .await;
    assert_eq!(answered.status, StatusCode::OK, "{}", answered.body);

    // A second ID in a browser that holds a session: a clear page, nobody new.
    let other = first_browser.get(&entry("other-participant", "s3")).await;
    assert_eq!(other.status, StatusCode::CONFLICT);
    assert!(
        other
            .body
            .contains("already taking part in this study as participant 5f1a2b3c4d5e6f7a8b9c0d1e"),
        "{}",
        other.body
    );
    assert_eq!(participants(&app, study).await, 1);

    // Personal invite links keep working, and such a browser is not switched either.
    let tokens = app.invite(study, 1).await;
    let mut invited = app.rater_client(&tokens[0]).await;
    assert_eq!(current_item(&mut invited).await["status"], "item");
    let switched = invited.get(&entry("p-invited", "s4")).await;
    assert_eq!(switched.status, StatusCode::CONFLICT);
    assert!(
        switched.body.contains("personal invite link"),
        "{}",
        switched.body
    );

    // Missing, malformed and unknown: the reason, and nothing written.
    let mut fresh = app.client();
    let missing = fresh.get(&format!("/s/{link}?STUDY_ID=65f0aa")).await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert!(
        missing
            .body
            .contains("missing your participant ID (PROLIFIC_PID)"),
        "{}",
        missing.body
    );
    for bad in ["%3Cscript%3E", "a%20b", &"x".repeat(65)] {
        let malformed = fresh.get(&format!("/s/{link}?PROLIFIC_PID={bad}")).await;
        assert_eq!(malformed.status, StatusCode::BAD_REQUEST, "{bad}");
        assert!(
            malformed
                .body
                .contains("PROLIFIC_PID in this link is not valid"),
            "{}",
            malformed.body
        );
    }
    let unknown = fresh.get("/s/not-a-link?PROLIFIC_PID=p1").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(
        fresh.cookies.is_empty(),
        "a refused entry set {:?}",
        fresh.cookies
    );
    assert_eq!(participants(&app, study).await, 1);

    // A participant who entered before the study closed goes on; a new one is turned away.
    let mut early = app.client();
    assert_eq!(
        early.get(&entry("early", "s5")).await.status,
        StatusCode::SEE_OTHER
    );
    app.store()
        .set_study_status(study, StudyStatus::Closed)
        .await
        .unwrap();
    let mut early_elsewhere = app.client();
    assert_eq!(
        early_elsewhere.get(&entry("early", "s6")).await.status,
        StatusCode::SEE_OTHER
    );
    let late = app.client().get(&entry("late", "s7")).await;
    assert_eq!(late.status, StatusCode::GONE);
    assert!(
        late.body
            .contains("closed and is not taking new participants"),
        "{}",
        late.body
    );
    assert_eq!(participants(&app, study).await, 2);

    // Staff revoke a participant: entering again says their place has ended.
    let raters = app.store().rater_progress(study).await.unwrap();
    let panel_rater = raters
        .iter()
        .find(|r| r.rater.name == "panel early")
        .expect("panel participants are listed with the raters");
    app.store()
        .revoke_rater(study, panel_rater.rater.id, app.now())
        .await
        .unwrap();
    let ended = app.client().get(&entry("early", "s8")).await;
    assert_eq!(ended.status, StatusCode::GONE);
    assert!(
        ended.body.contains("place in this study has ended"),
        "{}",
        ended.body
    );
}
on_both_backends!(participants_enter_resume_and_bad_entries_are_refused);

/// 200 participants open the link at the same moment (20 of them twice, as a double click
/// would): every request is answered without a server error, and each ID is one rater.
async fn two_hundred_participants_enter_at_once(backend: Backend) {
    let app = TestApp::start(backend).await;
    let fixture = app.fixture(4, 1, 1, 45_000).await;
    let study = fixture.study_id;
    let mut admin = app.staff_client("ada", UserRole::Admin).await;
    let link = open_panel(&app, &mut admin, study).await;
    // The twenty doubled entries are sent right after each other, so they race.
    let ids: Vec<String> = (0..200)
        .flat_map(|i| vec![format!("pid{i:03}"); if i % 10 == 0 { 2 } else { 1 }])
        .collect();
    assert_eq!(ids.len(), 220);
    let tasks: Vec<_> = ids
        .iter()
        .map(|id| {
            let router = app.router.clone();
            let request = Request::builder()
                .method(Method::GET)
                .uri(format!("/s/{link}?PROLIFIC_PID={id}&SESSION_ID=s-{id}"))
                .header(header::HOST, "lab.test")
                .body(Body::empty())
                .unwrap();
            tokio::spawn(async move { router.oneshot(request).await.unwrap().status() })
        })
        .collect();
    let mut statuses = std::collections::BTreeMap::new();
    for task in tasks {
        *statuses.entry(task.await.unwrap().as_u16()).or_insert(0) += 1;
    }
    assert_eq!(statuses, [(303, 220)].into(), "statuses of 220 entries");
    assert_eq!(participants(&app, study).await, 200);
    let raters = app.store().rater_progress(study).await.unwrap();
    let mut names: Vec<&str> = raters.iter().map(|r| r.rater.name.as_str()).collect();
    names.sort();
    names.dedup();
    assert_eq!((raters.len(), names.len()), (200, 200));
}
on_both_backends!(two_hundred_participants_enter_at_once);

async fn next_status(client: &mut Client<'_>) -> serde_json::Value {
    current_item(client).await
}

async fn answer(client: &mut Client<'_>, item: &serde_json::Value, verdict: &str) {
    let answered = client
        .post_json(
            "/api/rater/judgements",
            &serde_json::json!({"assignment_id": item["assignment_id"], "verdict": verdict}),
        )
        .await;
    assert_eq!(answered.status, StatusCode::OK, "{}", answered.body);
}

/// Completion codes (issue 20, part 4): each end of the study shows its own code and the link
/// back to the panel, and no page shows a code before its end is reached.
async fn completion_codes_are_shown_at_their_ends_only(backend: Backend) {
    let app = TestApp::start(backend).await;
    let protocol = RaterProtocol {
        screening_items: 2,
        screening_pass_accuracy: 1.0,
        max_rater_ms: 30_000,
        ..RaterProtocol::default()
    };
    let fixture = app.fixture_with_protocol(20, 6, protocol).await;
    let study = fixture.study_id;
    let mut admin = app.staff_client("ada", UserRole::Admin).await;
    let link = open_panel(&app, &mut admin, study).await;
    let form = format!("/studies/{study}/panel/completions");
    let prolific = "https://app.prolific.com/submissions/complete?cc={code}";

    // One bad outcome refuses the whole form, naming it; nothing is saved.
    let refused = admin
        .post_form(
            &form,
            &[
                ("completed_code", "C0MPLETE"),
                ("screened_out_code", "bad code"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused
            .body
            .contains("Screened out (the comprehension check failed twice, or below the qualification pass mark): the code must be"),
        "{}",
        refused.body
    );
    assert!(app.store().completions(study).await.unwrap().is_empty());
    let saved = admin
        .post_form(
            &form,
            &[
                ("completed_code", "C0MPLETE"),
                ("completed_url", prolific),
                ("screened_out_code", "SCREEN0UT"),
                ("screened_out_url", prolific),
                ("out_of_time_code", "T1MEUP"),
                ("out_of_time_url", ""),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    assert_eq!(app.store().completions(study).await.unwrap().len(), 3);
    let codes = ["C0MPLETE", "SCREEN0UT", "T1MEUP"];
    let shows_no_code = |body: &str| codes.iter().all(|code| !body.contains(code));

    // Screened out: both qualification items answered wrongly.
    let mut failing = app.client();
    let entered = failing.get(&format!("/s/{link}?PROLIFIC_PID=fails")).await;
    assert_eq!(entered.status, StatusCode::SEE_OTHER);
    assert!(shows_no_code(&failing.get("/rate").await.body));
    for _ in 0..2 {
        let item = next_status(&mut failing).await;
        assert_eq!(item["stage"], "screening", "{item}");
        assert!(shows_no_code(&failing.get("/rate/item").await.body));
        let text = item["solution"].as_str().unwrap_or_default();
        let wrongly = if common::truthful(text) == "wrong" {
            "correct"
        } else {
            "wrong"
        };
        answer(&mut failing, &item, wrongly).await;
    }
    let end = failing.get("/rate/item").await.body;
    assert!(end.contains("id=\"completion-code\">SCREEN0UT<"), "{end}");
    assert!(
        end.contains("href=\"https://app.prolific.com/submissions/complete?cc=SCREEN0UT\""),
        "{end}"
    );
    assert!(
        !end.contains("C0MPLETE") && !end.contains("T1MEUP"),
        "{end}"
    );

    // Out of time: qualified, then two 20 s items against a 30 s cap. This code has no URL.
    let mut passing = app.client();
    passing.get(&format!("/s/{link}?PROLIFIC_PID=passes")).await;
    let mut session_items = 0;
    loop {
        let item = next_status(&mut passing).await;
        if item["status"] != "item" {
            break;
        }
        assert!(shows_no_code(&passing.get("/rate/item").await.body));
        if item["stage"] != "screening" {
            session_items += 1;
            app.state.clock.advance_ms(20_000);
        }
        let text = item["solution"].as_str().unwrap_or_default();
        answer(&mut passing, &item, common::truthful(text)).await;
    }
    assert_eq!(session_items, 2);
    let end = passing.get("/rate/item").await.body;
    assert!(end.contains("id=\"completion-code\">T1MEUP<"), "{end}");
    assert!(!end.contains("return-to-panel"), "{end}");
    assert!(
        !end.contains("C0MPLETE") && !end.contains("SCREEN0UT"),
        "{end}"
    );

    // Completed, in a study without screening or cap: nothing left to judge.
    let plain = app.fixture(2, 1, 1, 45_000).await.study_id;
    let plain_link = open_panel(&app, &mut admin, plain).await;
    let saved = admin
        .post_form(
            &format!("/studies/{plain}/panel/completions"),
            &[("completed_code", "D0NE22"), ("completed_url", prolific)],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let mut finisher = app.client();
    finisher
        .get(&format!("/s/{plain_link}?PROLIFIC_PID=finishes"))
        .await;
    let mut judged = 0;
    loop {
        let item = next_status(&mut finisher).await;
        if item["status"] != "item" {
            assert_eq!(item["status"], "finished", "{item}");
            break;
        }
        assert!(!finisher.get("/rate/item").await.body.contains("D0NE22"));
        answer(&mut finisher, &item, "correct").await;
        judged += 1;
    }
    assert_eq!(judged, 2);
    let end = finisher.get("/rate/item").await.body;
    assert!(end.contains("id=\"completion-code\">D0NE22<"), "{end}");
    assert!(end.contains("cc=D0NE22\""), "{end}");
}
on_both_backends!(completion_codes_are_shown_at_their_ends_only);

/// Judges every item left for `client`, truthfully or always "correct", and returns
/// (answered, right) counted from the items as served, for the bonus computed by hand.
async fn judge_everything(client: &mut Client<'_>, truthfully: bool) -> (i64, i64) {
    let (mut answered, mut right) = (0, 0);
    loop {
        let item = next_status(client).await;
        if item["status"] != "item" {
            return (answered, right);
        }
        let text = item["solution"].as_str().unwrap_or_default();
        let verdict = if truthfully {
            common::truthful(text)
        } else {
            "correct"
        };
        answer(client, &item, verdict).await;
        answered += 1;
        right += i64::from(verdict == common::truthful(text));
    }
}

/// Bonuses (issue 20, part 6): the rule is checked, the export is the panel's bulk-bonus CSV
/// with amounts computed by hand here, and a second export lists nothing already exported.
async fn bonuses_are_exported_once(backend: Backend) {
    let app = TestApp::start(backend).await;
    let study = app.fixture(4, 1, 2, 45_000).await.study_id;
    let mut admin = app.staff_client("ada", UserRole::Admin).await;
    let link = open_panel(&app, &mut admin, study).await;
    let rule_form = format!("/studies/{study}/panel/bonus");
    let refused = admin
        .post_form(&rule_form, &[("fixed", "1"), ("per_judgement", "0.055")])
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused
            .body
            .contains("bonus per judgement: &#34;0.055&#34; is not an amount"),
        "{}",
        refused.body
    );
    let saved = admin
        .post_form(
            &rule_form,
            &[
                ("fixed", "1.00"),
                ("per_judgement", "0.05"),
                ("per_correct", "0.10"),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);

    let mut careful = app.client();
    careful
        .get(&format!("/s/{link}?PROLIFIC_PID=careful"))
        .await;
    let (a_answered, a_right) = judge_everything(&mut careful, true).await;
    let mut hasty = app.client();
    hasty.get(&format!("/s/{link}?PROLIFIC_PID=hasty")).await;
    let (b_answered, b_right) = judge_everything(&mut hasty, false).await;
    assert_eq!((a_answered, a_right, b_answered), (4, 4, 4));
    assert!(
        b_right < 4,
        "the always-correct participant got {b_right} of 4 right"
    );
    // An invited rater earns nothing here, and a participant who answered nothing neither.
    let tokens = app.invite(study, 1).await;
    let mut invited = app.rater_client(&tokens[0]).await;
    judge_everything(&mut invited, true).await;
    app.client()
        .get(&format!("/s/{link}?PROLIFIC_PID=idle"))
        .await;

    let cents = |answered: i64, right: i64| 100 + 5 * answered + 10 * right;
    let amount = |c: i64| format!("{}.{:02}", c / 100, c % 100);
    let export = format!("/studies/{study}/panel/bonuses.csv");
    let first = admin.post_form(&export, &[]).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert!(
        first.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert_eq!(
        first.body,
        format!(
            "participant_id,amount\ncareful,{}\nhasty,{}\n",
            amount(cents(a_answered, a_right)),
            amount(cents(b_answered, b_right))
        )
    );
    assert_eq!(cents(4, 4), 160, "1.00 + 4 × 0.05 + 4 × 0.10");
    let second = admin.post_form(&export, &[]).await;
    assert_eq!(second.body, "participant_id,amount\n");

    // A participant judging after the export is listed alone in the next one.
    let mut later = app.client();
    later.get(&format!("/s/{link}?PROLIFIC_PID=later")).await;
    let (c_answered, c_right) = judge_everything(&mut later, true).await;
    assert!(c_answered > 0);
    let third = admin.post_form(&export, &[]).await;
    assert_eq!(
        third.body,
        format!(
            "participant_id,amount\nlater,{}\n",
            amount(cents(c_answered, c_right))
        )
    );
    assert_eq!(
        admin.post_form(&export, &[]).await.body,
        "participant_id,amount\n"
    );
}
on_both_backends!(bonuses_are_exported_once);

/// Places and returns (issue 20, part 5): a full study turns new participants away; the
/// panel's submissions export frees the places of those it reports as returned or timed out
/// (their unanswered item back in the pool, their finished judgements kept); a file with an
/// ID that is not a participant changes nothing.
async fn returned_participants_free_their_places(backend: Backend) {
    let app = TestApp::start(backend).await;
    let study = app.fixture(6, 1, 1, 45_000).await.study_id;
    let mut admin = app.staff_client("ada", UserRole::Admin).await;
    let panel_form = format!("/studies/{study}/panel");
    let refused = admin
        .post_form(
            &panel_form,
            &[("id_param", "PROLIFIC_PID"), ("places", "zero")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused
            .body
            .contains("places: &#34;zero&#34; is not a whole number"),
        "{}",
        refused.body
    );
    let opened = admin
        .post_form(
            &panel_form,
            &[("id_param", "PROLIFIC_PID"), ("places", "2")],
        )
        .await;
    assert_eq!(opened.status, StatusCode::SEE_OTHER, "{}", opened.body);
    let link = app.store().study_panel(study).await.unwrap().unwrap().link;
    let enter = |id: &str| format!("/s/{link}?PROLIFIC_PID={id}");

    let mut leaver = app.client();
    assert_eq!(
        leaver.get(&enter("leaver")).await.status,
        StatusCode::SEE_OTHER
    );
    let first = current_item(&mut leaver).await;
    answer(&mut leaver, &first, "correct").await;
    let running = current_item(&mut leaver).await;
    assert_eq!(running["status"], "item");
    let mut stayer = app.client();
    assert_eq!(
        stayer.get(&enter("stayer")).await.status,
        StatusCode::SEE_OTHER
    );
    let full = app.client().get(&enter("third")).await;
    assert_eq!(full.status, StatusCode::GONE);
    assert!(full.body.contains("This study is full"), "{}", full.body);
    // The same participant entering again is not a new one: a full study lets them back.
    assert_eq!(
        app.client().get(&enter("stayer")).await.status,
        StatusCode::SEE_OTHER
    );

    let returns = format!("/studies/{study}/panel/returns");
    let export = |rows: &str| format!("Submission id,Participant id,Status\n{rows}");
    let stranger = admin
        .post_multipart(
            &returns,
            &[],
            export("s1,leaver,RETURNED\ns2,stranger,RETURNED\n").as_bytes(),
        )
        .await;
    assert_eq!(stranger.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        stranger.body.contains("nothing was changed: 1 ID in the file is not a participant of this study (is it this study&#39;s export?): stranger"),
        "{}",
        stranger.body
    );
    assert_eq!(
        app.store()
            .study_panel(study)
            .await
            .unwrap()
            .unwrap()
            .returned,
        0
    );
    assert_eq!(
        app.store().study_progress(study).await.unwrap().in_progress,
        1
    );
    let no_status = admin
        .post_multipart(&returns, &[], b"Participant id\nleaver\n")
        .await;
    assert_eq!(no_status.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        no_status.body.contains("&#34;Status&#34; column"),
        "{}",
        no_status.body
    );

    let file = export("s1,leaver,RETURNED\ns2,stayer,AWAITING REVIEW\n");
    let applied = admin.post_multipart(&returns, &[], file.as_bytes()).await;
    assert_eq!(applied.status, StatusCode::OK, "{}", applied.body);
    assert!(
        applied
            .body
            .contains("1 participant in the file returned or timed out; 1 newly marked"),
        "{}",
        applied.body
    );
    let progress = app.store().study_progress(study).await.unwrap();
    assert_eq!(
        (progress.in_progress, progress.judged),
        (0, 1),
        "item freed, judgement kept"
    );
    let again = admin.post_multipart(&returns, &[], file.as_bytes()).await;
    assert!(again.body.contains("0 newly marked"), "{}", again.body);
    assert_eq!(
        app.store()
            .study_panel(study)
            .await
            .unwrap()
            .unwrap()
            .returned,
        1
    );

    // The place is free for someone new; the returned participant's link has ended.
    assert_eq!(
        app.client().get(&enter("third")).await.status,
        StatusCode::SEE_OTHER
    );
    let back = leaver.get(&enter("leaver")).await;
    assert_eq!(back.status, StatusCode::GONE);
    assert!(
        back.body.contains("place in this study has ended"),
        "{}",
        back.body
    );
}
on_both_backends!(returned_participants_free_their_places);

/// Data rights (issue 20, part 7): deleting a participant's data removes their judgements from
/// every report and download, frees their solutions for other raters, ends their place, and
/// is logged without their ID.
async fn a_participants_data_is_deleted_on_request(backend: Backend) {
    let app = TestApp::start(backend).await;
    let study = app.fixture(4, 1, 1, 45_000).await.study_id;
    let mut admin = app.staff_client("ada", UserRole::Admin).await;
    let link = open_panel(&app, &mut admin, study).await;
    let enter = |id: &str| format!("/s/{link}?PROLIFIC_PID={id}");
    let mut leaving = app.client();
    leaving.get(&enter("forget-me")).await;
    assert_eq!(judge_everything(&mut leaving, true).await.0, 4);
    let mut staying = app.client();
    staying.get(&enter("keep-me")).await;
    assert_eq!(judge_everything(&mut staying, false).await.0, 4);
    let progress = app.store().study_progress(study).await.unwrap();
    assert_eq!((progress.judged, progress.wanted), (8, 8));
    let attempts = serde_json::to_string(&app.attempts(study).await).unwrap();
    assert_eq!(attempts.matches("panel forget-me").count(), 4);

    let delete = format!("/studies/{study}/panel/delete");
    let unknown = admin
        .post_form(&delete, &[("participant_id", "nobody")])
        .await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        unknown
            .body
            .contains("nobody is not a participant of this study"),
        "{}",
        unknown.body
    );
    assert_eq!(app.store().study_progress(study).await.unwrap().judged, 8);

    let deleted = admin
        .post_form(&delete, &[("participant_id", "forget-me")])
        .await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.body);
    assert!(
        deleted
            .body
            .contains("Deleted forget-me&#39;s data: 4 judgements and 0 qualification"),
        "{}",
        deleted.body
    );
    let log = app.store().data_deletions(study).await.unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!((log[0].judgements, log[0].deleted_by.as_str()), (4, "ada"));
    let page = admin.get(&format!("/studies/{study}/panel")).await.body;
    assert!(
        !page.contains("forget-me"),
        "the log keeps no participant ID"
    );

    // Reports and downloads no longer have them; their solutions are open again.
    let progress = app.store().study_progress(study).await.unwrap();
    assert_eq!(progress.judged, 4);
    let attempts = serde_json::to_string(&app.attempts(study).await).unwrap();
    assert!(!attempts.contains("forget-me"));
    let report = admin
        .get(&format!("/studies/{study}/report.json"))
        .await
        .json();
    assert_eq!(report["judgements"], 4);
    let mut newcomer = app.client();
    newcomer.get(&enter("newcomer")).await;
    assert_eq!(judge_everything(&mut newcomer, true).await.0, 4);
    assert_eq!(app.store().study_progress(study).await.unwrap().judged, 8);

    // Their place has ended, and there is nothing left to delete.
    let back = app.client().get(&enter("forget-me")).await;
    assert_eq!(back.status, StatusCode::GONE);
    let twice = admin
        .post_form(&delete, &[("participant_id", "forget-me")])
        .await;
    assert_eq!(twice.status, StatusCode::UNPROCESSABLE_ENTITY);
}
on_both_backends!(a_participants_data_is_deleted_on_request);

const CONSENT: &str = "# Taking part\n\nYou judge solutions for about **an hour**. <b>bold</b>";
const BACKGROUND: &str = "[choice, required] Highest maths education\n- School\n- University\n\n[number 0-80, optional] Years of teaching maths";
const COMPREHENSION: &str = "How long do you have for each solution?\n- As long as I like\n* The time the countdown shows\n\nWhat do you judge?\n* Whether every step is right\n- Only the final answer";

/// Consent, background questions and the comprehension check (issue 20, parts 2 to 4): in
/// that order before any item, for panel and invited participants alike; the server serves
/// no item before they are done; a decline and two failed checks end the study with their own
/// codes; the accepted version and the answers are stored and in the downloads.
async fn consent_and_questions_come_before_items(backend: Backend) {
    let app = TestApp::start(backend).await;
    let study = app.fixture(3, 1, 2, 45_000).await.study_id;
    let mut admin = app.staff_client("ada", UserRole::Admin).await;
    let link = open_panel(&app, &mut admin, study).await;
    let intake = format!("/studies/{study}/panel/intake");
    // A list that does not read is refused whole, naming the line; nothing is saved.
    let refused = admin
        .post_form(
            &intake,
            &[
                ("consent", CONSENT),
                ("background", BACKGROUND),
                ("comprehension", "Q?\n- a\n- b"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.body.contains(
            "comprehension questions: line 1: &#34;Q?&#34; needs exactly one right option"
        ),
        "{}",
        refused.body
    );
    assert_eq!(
        app.store().study_intake(study).await.unwrap(),
        Default::default()
    );
    let saved = admin
        .post_form(
            &intake,
            &[
                ("consent", CONSENT),
                ("background", BACKGROUND),
                ("comprehension", COMPREHENSION),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let completions = admin
        .post_form(
            &format!("/studies/{study}/panel/completions"),
            &[
                ("completed_code", "D0NE"),
                ("screened_out_code", "SCREEN"),
                ("declined_consent_code", "N0C0NSENT"),
                (
                    "declined_consent_url",
                    "https://app.prolific.com/submissions/complete?cc={code}",
                ),
            ],
        )
        .await;
    assert_eq!(completions.status, StatusCode::SEE_OTHER);
    let enter = |id: &str| format!("/s/{link}?PROLIFIC_PID={id}");

    // Consent first; nothing is served before it, on the pages or the API.
    let mut ana = app.client();
    ana.get(&enter("ana")).await;
    let consent = ana.get("/rate").await;
    assert!(
        consent.body.contains("<h1>Taking part</h1>"),
        "{}",
        consent.body
    );
    assert!(consent.body.contains("<strong>an hour</strong>"));
    assert!(
        consent.body.contains("&lt;b&gt;bold&lt;/b&gt;"),
        "raw HTML is shown as text"
    );
    let item_page = ana.get("/rate/item").await;
    assert_eq!(item_page.location(), Some("/rate"));
    assert_eq!(
        current_item(&mut ana).await,
        serde_json::json!({"status": "intake", "step": "consent"})
    );
    assert_eq!(
        app.store().study_progress(study).await.unwrap().in_progress,
        0
    );
    // A version that is no longer current is not accepted (the text changed meanwhile).
    ana.post_form("/rate/consent", &[("version", "7"), ("answer", "accept")])
        .await;
    assert_eq!(current_item(&mut ana).await["step"], "consent");
    ana.post_form("/rate/consent", &[("version", "1"), ("answer", "accept")])
        .await;

    // Background questions: a missing required answer and a number out of range are named
    // beside their questions, with what was typed kept; nothing is stored.
    assert_eq!(current_item(&mut ana).await["step"], "background");
    let refused = ana
        .post_form("/rate/background", &[("q0", ""), ("q1", "99")])
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.body.contains("Please answer this question."));
    assert!(refused.body.contains("Please give a number from 0 to 80."));
    assert!(refused.body.contains("value=\"99\""), "{}", refused.body);
    assert_eq!(current_item(&mut ana).await["step"], "background");
    let answered = ana
        .post_form("/rate/background", &[("q0", "University"), ("q1", "3")])
        .await;
    assert_eq!(answered.location(), Some("/rate"));

    // The instructions carry the comprehension check, without the right options marked.
    let instructions = ana.get("/rate").await.body;
    assert!(
        instructions.contains("id=\"comprehension-form\""),
        "{instructions}"
    );
    assert!(instructions.contains("Attempts left: 2."));
    assert!(!instructions.contains('*'));
    assert_eq!(current_item(&mut ana).await["step"], "comprehension");
    let wrong = ana
        .post_form("/rate/comprehension", &[("q0", "0"), ("q1", "0")])
        .await;
    assert_eq!(wrong.location(), Some("/rate?wrong=1"));
    let again = ana.get("/rate?wrong=1").await.body;
    assert!(
        again.contains("1 of your answers were not right"),
        "{again}"
    );
    assert!(again.contains("Attempts left: 1."));
    let right = ana
        .post_form("/rate/comprehension", &[("q0", "1"), ("q1", "0")])
        .await;
    assert_eq!(right.location(), Some("/rate/item"));
    let item = current_item(&mut ana).await;
    assert_eq!(item["status"], "item", "{item}");
    let page = ana.get("/rate/item").await.body;
    assert!(
        page.contains("Item 1 of at most 3 · 4 h 0 min of your time left"),
        "{page}"
    );

    // Failing the check twice screens out, with the screen-out code; no item ever served.
    let mut ben = app.client();
    ben.get(&enter("ben")).await;
    ben.post_form("/rate/consent", &[("version", "1"), ("answer", "accept")])
        .await;
    ben.post_form("/rate/background", &[("q0", "School")]).await;
    for _ in 0..2 {
        ben.post_form("/rate/comprehension", &[("q0", "0"), ("q1", "1")])
            .await;
    }
    let end = ben.get("/rate").await.body;
    assert!(end.contains("not right on either attempt"), "{end}");
    assert!(end.contains("id=\"completion-code\">SCREEN<"), "{end}");
    assert_eq!(ben.get("/rate/item").await.body, end);
    assert_eq!(current_item(&mut ben).await["status"], "not_admitted");
    // A third attempt changes nothing.
    ben.post_form("/rate/comprehension", &[("q0", "1"), ("q1", "0")])
        .await;
    assert_eq!(current_item(&mut ben).await["status"], "not_admitted");

    // Declining consent ends the study with its own code and link back to the panel.
    let mut cleo = app.client();
    cleo.get(&enter("cleo")).await;
    cleo.post_form("/rate/consent", &[("version", "1"), ("answer", "decline")])
        .await;
    let declined = cleo.get("/rate").await.body;
    assert!(
        declined.contains("id=\"completion-code\">N0C0NSENT<"),
        "{declined}"
    );
    assert!(declined.contains("cc=N0C0NSENT\""), "{declined}");
    assert!(!declined.contains("SCREEN") && !declined.contains("D0NE"));
    assert_eq!(current_item(&mut cleo).await["status"], "declined_consent");
    // An answer already given stays.
    cleo.post_form("/rate/consent", &[("version", "1"), ("answer", "accept")])
        .await;
    assert_eq!(current_item(&mut cleo).await["status"], "declined_consent");

    // A changed text is a new version for newcomers; those who agreed keep theirs.
    let changed = admin
        .post_form(
            &intake,
            &[
                ("consent", "# Taking part (v2)"),
                ("background", BACKGROUND),
                ("comprehension", COMPREHENSION),
            ],
        )
        .await;
    assert_eq!(changed.status, StatusCode::SEE_OTHER);
    assert_eq!(
        app.store().study_intake(study).await.unwrap().consent,
        Some((2, "# Taking part (v2)".to_string()))
    );
    assert_eq!(app.store().consent_text(study, 1).await.unwrap(), CONSENT);
    assert_eq!(current_item(&mut ana).await["status"], "item");
    // Invited raters go through the same steps.
    let token = app.invite(study, 1).await.remove(0);
    let mut invited = app.rater_client(&token).await;
    assert!(invited.get("/rate").await.body.contains("Taking part (v2)"));
    assert_eq!(current_item(&mut invited).await["step"], "consent");

    // The answers are in the downloads with the participant's ID.
    let item = current_item(&mut ana).await;
    answer(&mut ana, &item, "correct").await;
    let attempts = app.attempts(study).await;
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["participant_id"], "ana");
    assert_eq!(attempts[0]["rater_returned"], serde_json::Value::Null);
    let background: serde_json::Value =
        serde_json::from_str(attempts[0]["rater_background"].as_str().unwrap()).unwrap();
    assert_eq!(
        background,
        serde_json::json!({"Highest maths education": "University", "Years of teaching maths": 3.0})
    );
}
on_both_backends!(consent_and_questions_come_before_items);

/// Idle participants (issue 20, part 5): past the panel link's idle limit a participant's
/// place is freed, their item returns to the pool and their judgements stay, marked `idle`;
/// a script reports returns through the JSON API with an admin's token; the approve/reject
/// list follows the quality outcomes.
async fn idle_places_are_freed_and_scripts_report_returns(backend: Backend) {
    let app = TestApp::start(backend).await;
    let study = app.fixture(6, 1, 1, 45_000).await.study_id;
    let mut admin = app.staff_client("ada", UserRole::Admin).await;
    let panel_form = format!("/studies/{study}/panel");
    let refused = admin
        .post_form(
            &panel_form,
            &[("id_param", "PROLIFIC_PID"), ("idle_minutes", "1")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.body.contains("idle limit: &#34;1&#34; is not"),
        "{}",
        refused.body
    );
    let opened = admin
        .post_form(
            &panel_form,
            &[
                ("id_param", "PROLIFIC_PID"),
                ("places", "2"),
                ("idle_minutes", "10"),
            ],
        )
        .await;
    assert_eq!(opened.status, StatusCode::SEE_OTHER, "{}", opened.body);
    let link = app.store().study_panel(study).await.unwrap().unwrap().link;
    let enter = |id: &str| format!("/s/{link}?PROLIFIC_PID={id}");

    let mut idler = app.client();
    idler.get(&enter("idler")).await;
    let first = current_item(&mut idler).await;
    answer(&mut idler, &first, "correct").await;
    assert_eq!(current_item(&mut idler).await["status"], "item");
    let mut worker = app.client();
    worker.get(&enter("worker")).await;
    assert_eq!(
        app.client().get(&enter("third")).await.status,
        StatusCode::GONE
    );

    // Nine minutes on: nobody is idle yet. Eleven: the idler is, the worker kept going.
    app.state.clock.advance_ms(9 * 60_000);
    assert_eq!(app.store().free_idle_places(app.now()).await.unwrap(), 0);
    let item = current_item(&mut worker).await;
    answer(&mut worker, &item, "correct").await;
    app.state.clock.advance_ms(2 * 60_000);
    assert_eq!(app.store().free_idle_places(app.now()).await.unwrap(), 1);
    assert_eq!(app.store().free_idle_places(app.now()).await.unwrap(), 0);
    let progress = app.store().study_progress(study).await.unwrap();
    assert_eq!((progress.in_progress, progress.judged), (0, 2));
    let panel = app.store().study_panel(study).await.unwrap().unwrap();
    assert_eq!(panel.idle, 1);
    assert_eq!(
        app.client().get(&enter("third")).await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(idler.get(&enter("idler")).await.status, StatusCode::GONE);
    let attempts = app.attempts(study).await;
    let idle_rows: Vec<_> = attempts
        .iter()
        .filter(|a| a["participant_id"] == "idler")
        .collect();
    assert_eq!(idle_rows.len(), 1);
    assert_eq!(idle_rows[0]["rater_returned"], "idle");

    // The JSON API: an admin's token reports returns, all or nothing; others may not.
    let token = legibility::auth::new_api_token();
    let (ada, _) = app.store().user_with_hash("ada").await.unwrap().unwrap();
    app.store()
        .create_api_token(
            ada.id,
            "panel sync",
            &legibility::auth::token_hash(&token),
            None,
            app.now(),
        )
        .await
        .unwrap();
    let report = |token: String, body: serde_json::Value| {
        let request = Request::builder()
            .method(Method::POST)
            .uri(format!("/api/studies/{study}/panel/returns"))
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        app.send(request)
    };
    let unknown = report(
        token.clone(),
        serde_json::json!({"participants": [
            {"participant_id": "worker", "status": "returned"},
            {"participant_id": "nobody", "status": "returned"}]}),
    )
    .await;
    assert_eq!(
        unknown.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        unknown.body
    );
    assert!(unknown.body.contains("nobody"), "{}", unknown.body);
    let bad_status = report(
        token.clone(),
        serde_json::json!({"participants": [{"participant_id": "worker", "status": "APPROVED"}]}),
    )
    .await;
    assert_eq!(bad_status.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        bad_status.body.contains("participants[0]: the status"),
        "{}",
        bad_status.body
    );
    assert_eq!(
        app.store()
            .study_panel(study)
            .await
            .unwrap()
            .unwrap()
            .returned,
        0
    );
    let marked = report(
        token.clone(),
        serde_json::json!({"participants": [{"participant_id": "worker", "status": "TIMED-OUT"}]}),
    )
    .await;
    assert_eq!(marked.status, StatusCode::OK, "{}", marked.body);
    assert_eq!(
        marked.json(),
        serde_json::json!({"listed": 1, "newly_marked": 1})
    );
    let researcher_token = legibility::auth::new_api_token();
    app.staff_client("rita", UserRole::Researcher).await;
    let (rita_user, _) = app.store().user_with_hash("rita").await.unwrap().unwrap();
    app.store()
        .create_api_token(
            rita_user.id,
            "notebook",
            &legibility::auth::token_hash(&researcher_token),
            None,
            app.now(),
        )
        .await
        .unwrap();
    let forbidden = report(researcher_token, serde_json::json!({"participants": []})).await;
    assert_eq!(
        forbidden.status,
        StatusCode::FORBIDDEN,
        "{}",
        forbidden.body
    );

    // The approve/reject list: one line per panel participant, from their outcomes.
    let review = admin
        .get(&format!("/studies/{study}/panel/review.csv"))
        .await;
    assert_eq!(review.status, StatusCode::OK);
    assert_eq!(
        review.body,
        "participant_id,decision,reason\n\
         idler,none,place ended: idle\n\
         worker,none,place ended: timed_out\n\
         third,none,no answered items yet\n"
    );
}
on_both_backends!(idle_places_are_freed_and_scripts_report_returns);

/// Failed quality (issue 20, part 4): where the study says so, a participant who gets fewer
/// than half of at least 3 silent gold items right is served no more items and reaches the
/// failed-quality end with its code; the approve/reject list rejects them and approves a
/// careful participant.
async fn failing_gold_items_ends_the_study_where_chosen(backend: Backend) {
    let app = TestApp::start(backend).await;
    let protocol = RaterProtocol {
        gold_items: 4,
        gold_rate: 0.9,
        ..RaterProtocol::default()
    };
    let study = app.fixture_with_protocol(20, 6, protocol).await.study_id;
    let mut admin = app.staff_client("ada", UserRole::Admin).await;
    let link = open_panel(&app, &mut admin, study).await;
    let codes = |ends: bool| {
        let mut fields = vec![("completed_code", "D0NE"), ("failed_quality_code", "BADQ")];
        if ends {
            fields.push(("gold_failure_ends", "1"));
        }
        fields
    };
    let form = format!("/studies/{study}/panel/completions");
    let saved = admin.post_form(&form, &codes(true)).await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    assert!(app.store().gold_failure_ends(study).await.unwrap());

    let mut careless = app.client();
    careless
        .get(&format!("/s/{link}?PROLIFIC_PID=careless"))
        .await;
    let mut gold_wrong = 0;
    let end = loop {
        let item = next_status(&mut careless).await;
        if item["status"] != "item" {
            break item;
        }
        let text = item["solution"].as_str().unwrap_or_default();
        let wrongly = if common::truthful(text) == "wrong" {
            "correct"
        } else {
            "wrong"
        };
        if common::problem_index_of(item["question"].as_str().unwrap()) >= 6 {
            gold_wrong += 1;
        }
        answer(&mut careless, &item, wrongly).await;
    };
    assert_eq!(end["status"], "failed_quality", "{end}");
    assert_eq!(
        gold_wrong, 3,
        "the end comes right after the third wrong gold answer"
    );
    let page = careless.get("/rate/item").await.body;
    assert!(page.contains("id=\"completion-code\">BADQ<"), "{page}");
    assert!(!page.contains("D0NE"));

    let mut careful = app.client();
    careful
        .get(&format!("/s/{link}?PROLIFIC_PID=careful"))
        .await;
    let (answered, right) = judge_everything(&mut careful, true).await;
    assert!(answered >= 6 && right == answered, "{answered} {right}");
    let review = admin
        .get(&format!("/studies/{study}/panel/review.csv"))
        .await
        .body;
    assert!(
        review.contains("\ncareless,reject,failed quality: 0 of 3 gold items right\n"),
        "{review}"
    );
    assert!(
        review.contains("\ncareful,approve,6 of 6 answers right\n"),
        "{review}"
    );

    // Where the study does not end on it, the same participant goes on.
    let saved = admin.post_form(&form, &codes(false)).await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER);
    assert_eq!(next_status(&mut careless).await["status"], "item");
}
on_both_backends!(failing_gold_items_ends_the_study_where_chosen);

//! Inviting raters in bulk and revoking links, through the real router on both databases: a CSV
//! of names and emails becomes working links (a page with the links and their CSV, or a CSV
//! download), a list with any bad line invites nobody and names each bad line, a revoked link
//! and cookie stop working at once and the rater's unanswered item returns to the pool while
//! their judgements still count, and only admins may revoke.

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use common::{Backend, Client, TestApp, TestResponse};
use legibility::domain::UserRole;
use legibility::store::raters::RaterProgress;
use serde_json::json;
use uuid::Uuid;

/// The invite links a page shows (each in its own `<code>`), as paths on this server.
fn link_paths(page: &str) -> Vec<String> {
    page.split("<code>")
        .skip(1)
        .filter_map(|s| s.split("</code>").next())
        .map(|link| {
            assert!(link.starts_with("http://lab.test/r/"), "{link}");
            link.trim_start_matches("http://lab.test").to_string()
        })
        .collect()
}

/// A client that opened `path` (an invite link) and got the rater cookie.
async fn open_link<'a>(app: &'a TestApp, path: &str) -> Client<'a> {
    let mut client = app.client();
    let response = client.get(path).await;
    assert_eq!(response.status, StatusCode::SEE_OTHER, "{}", response.body);
    assert_eq!(response.location(), Some("/rate"));
    client
}

async fn raters(app: &TestApp, study: Uuid) -> Vec<RaterProgress> {
    app.store().rater_progress(study).await.unwrap()
}

/// The progress line of the rater called `name`.
async fn rater_named(app: &TestApp, study: Uuid, name: &str) -> RaterProgress {
    raters(app, study)
        .await
        .into_iter()
        .find(|r| r.rater.name == name)
        .unwrap_or_else(|| panic!("no rater {name:?}"))
}

async fn bulk_csv_invites_create_working_links(backend: Backend) {
    let app = TestApp::start(backend).await;
    let fixture = app.fixture(2, 1, 2, 45_000).await;
    let invites = format!("/studies/{}/invites", fixture.study_id);
    let mut admin = app.staff_client("ada", UserRole::Admin).await;
    assert_eq!(admin.get(&invites).await.status, StatusCode::OK);

    // A CSV upload: three raters, one without email, one name quoted because of its comma.
    let csv = "name,email\nAnn,ann@example.org\n\"Bo, Jr.\",\nCy,cy@example.org\n";
    let page = admin.post_multipart(&invites, &[], csv.as_bytes()).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let paths = link_paths(&page.body);
    assert_eq!(paths.len(), 3);
    // The same rows as CSV text to copy (askama escapes the quotes in the page).
    assert!(
        page.body
            .contains("name,email,link\nAnn,ann@example.org,http://lab.test/r/")
    );
    assert!(page.body.contains("Bo, Jr."));
    for (path, name) in paths.iter().zip(["Ann", "Bo, Jr.", "Cy"]) {
        let mut rater = open_link(&app, path).await;
        let welcome = rater.get("/rate").await;
        assert!(welcome.body.contains(name), "{}", welcome.body);
        assert_eq!(rater.get("/api/rater/item").await.json()["status"], "item");
    }
    let invited = raters(&app, fixture.study_id).await;
    let listed: Vec<(&str, Option<&str>)> = invited
        .iter()
        .map(|r| (r.rater.name.as_str(), r.email.as_deref()))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("Ann", Some("ann@example.org")),
            ("Bo, Jr.", None),
            ("Cy", Some("cy@example.org"))
        ]
    );
    assert!(invited.iter().all(|r| r.started_at.is_some()));
    assert!(invited.iter().all(|r| r.last_activity_at.is_some()));
    let study_page = admin
        .get(&format!("/studies/{}", fixture.study_id))
        .await
        .body;
    assert!(study_page.contains("Raters (3)"));
    assert!(study_page.contains("ann@example.org"));

    // `format=csv` (the page's second button): the links come back as a CSV attachment.
    let download = admin
        .post_multipart(
            &invites,
            &[("format", "csv")],
            b"name,email\nDee,dee@example.org\n",
        )
        .await;
    assert_eq!(download.status, StatusCode::OK, "{}", download.body);
    assert_eq!(
        download.headers[header::CONTENT_TYPE],
        "text/csv; charset=utf-8"
    );
    let disposition = download.headers[header::CONTENT_DISPOSITION]
        .to_str()
        .unwrap();
    assert!(disposition.starts_with("attachment;"), "{disposition}");
    let mut lines = download.body.lines();
    assert_eq!(lines.next(), Some("name,email,link"));
    let row = lines.next().unwrap();
    assert!(
        row.starts_with("Dee,dee@example.org,http://lab.test/r/"),
        "{row}"
    );
    assert_eq!(lines.next(), None);
    let path = row
        .rsplit(',')
        .next()
        .unwrap()
        .trim_start_matches("http://lab.test");
    open_link(&app, path).await;

    // A client asking for text/csv gets the same from the names form.
    let request = Request::builder()
        .method(Method::POST)
        .uri(&invites)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ACCEPT, "text/csv")
        .body(Body::from("names=Eve%0AFay"))
        .unwrap();
    let by_accept = admin.send(request).await;
    assert_eq!(by_accept.status, StatusCode::OK, "{}", by_accept.body);
    assert_eq!(by_accept.body.lines().count(), 3, "{}", by_accept.body);
    assert!(by_accept.body.contains("\nFay,,http://lab.test/r/"));
    assert_eq!(raters(&app, fixture.study_id).await.len(), 6);
}
on_both_backends!(bulk_csv_invites_create_working_links);

/// Posts `csv` as the invite form's file.
async fn post_csv(admin: &mut Client<'_>, study: Uuid, csv: &[u8]) -> TestResponse {
    admin
        .post_multipart(&format!("/studies/{study}/invites"), &[], csv)
        .await
}

async fn a_list_with_a_bad_line_invites_nobody(backend: Backend) {
    let app = TestApp::start(backend).await;
    let fixture = app.fixture(2, 1, 2, 45_000).await;
    let study = fixture.study_id;
    let mut admin = app.staff_client("ada", UserRole::Admin).await;
    let first = post_csv(&mut admin, study, b"name,email\nAnn,ann@example.org\n").await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);

    // Good lines 2 and 6, bad lines 3 (no name), 4 (email), 5 (Ann is invited already) and 7
    // (a name twice in the file): nobody is invited, and the page names every bad line.
    let csv =
        "name,email\nBo,bo@example.org\n,x@example.org\nCy,cy.example.org\nann,\nDee,\nDEE,\n";
    let refused = post_csv(&mut admin, study, csv.as_bytes()).await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.body
    );
    for expected in [
        "nobody was invited",
        "line 3: the name is empty",
        "line 4: email",
        "line 5: ",
        "is already invited to this study",
        "line 7: the name",
        "is already on line 6",
    ] {
        assert!(
            refused.body.contains(expected),
            "{expected:?} missing: {}",
            refused.body
        );
    }
    assert!(!refused.body.contains("line 2:"));
    assert!(link_paths(&refused.body).is_empty());
    // The forms are there to try again.
    assert!(refused.body.contains("id=\"invite-form\""));
    assert_eq!(raters(&app, study).await.len(), 1);

    // A wrong header, a file over the row limit, an upload over the size limit, the names
    // textarea with a duplicate, names and a file at once, neither: all refused, nobody invited.
    let header = post_csv(&mut admin, study, b"email,name\nx@y.org,Eve\n").await;
    assert_eq!(header.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        header
            .body
            .contains("line 1: the header must be name,email"),
        "{}",
        header.body
    );
    let mut many = String::from("name,email\n");
    for i in 0..=legibility::invites::MAX_INVITEES {
        many.push_str(&format!("rater {i},\n"));
    }
    let too_many = post_csv(&mut admin, study, many.as_bytes()).await;
    assert_eq!(too_many.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        too_many.body.contains("more than 10000 raters"),
        "{}",
        too_many.body
    );
    let huge = vec![b'x'; legibility::invites::MAX_CSV_BYTES + 512 * 1024];
    let too_big = post_csv(&mut admin, study, &huge).await;
    assert_eq!(
        too_big.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        too_big.body
    );
    assert!(
        too_big.body.contains("larger than 2 MiB"),
        "{}",
        too_big.body
    );
    let twice = admin
        .post_form(
            &format!("/studies/{study}/invites"),
            &[("names", "Gus\nHal\ngus")],
        )
        .await;
    assert_eq!(twice.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(twice.body.contains("line 3: the name"), "{}", twice.body);
    let both = admin
        .post_multipart(
            &format!("/studies/{study}/invites"),
            &[("names", "Ivy")],
            b"name\nJo\n",
        )
        .await;
    assert_eq!(both.status, StatusCode::BAD_REQUEST);
    let neither = admin
        .post_form(&format!("/studies/{study}/invites"), &[("names", " \n")])
        .await;
    assert_eq!(neither.status, StatusCode::BAD_REQUEST);
    assert_eq!(raters(&app, study).await.len(), 1);
}
on_both_backends!(a_list_with_a_bad_line_invites_nobody);

/// Only helpful solutions: one solution per problem, so with one judgement per solution every
/// slot is observable (a rater who is refused an item sees "finished").
fn helpful_only(problems: usize, labels: &[String]) -> String {
    common::solutions_jsonl(problems, labels)
        .lines()
        .filter(|line| line.contains("\"helpful\""))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn answer(rater: &mut Client<'_>, assignment: &serde_json::Value) -> TestResponse {
    rater
        .post_json(
            "/api/rater/judgements",
            &json!({"assignment_id": assignment, "verdict": "correct"}),
        )
        .await
}

async fn revoking_stops_the_link_and_returns_the_slot(backend: Backend) {
    let app = TestApp::start(backend).await;
    // Two problems, one solution each, one judgement wanted per solution.
    let fixture = app
        .fixture_with_solutions(2, 1, 1, 45_000, helpful_only)
        .await;
    let study = fixture.study_id;
    let tokens = app.invite(study, 2).await;
    let mut ann = app.rater_client(&tokens[0]).await;
    let mut ann_api = app.client();
    ann_api.bearer = Some(tokens[0].clone());
    let mut bo = app.rater_client(&tokens[1]).await;

    // Ann judges one solution and holds the other; Bo gets nothing: both slots are taken.
    let first = ann.get("/api/rater/item").await.json();
    assert_eq!(
        answer(&mut ann, &first["assignment_id"]).await.status,
        StatusCode::OK
    );
    let held = ann_api.get("/api/rater/item").await.json();
    assert_eq!(held["status"], "item");
    assert_eq!(bo.get("/api/rater/item").await.json()["status"], "finished");

    // The admin revokes Ann's link from the study page.
    let ann_id = rater_named(&app, study, "rater 0").await.rater.id;
    let mut admin = app.staff_client("ada", UserRole::Admin).await;
    let page = admin.get(&format!("/studies/{study}")).await.body;
    let revoke = format!("/studies/{study}/raters/{ann_id}/revoke");
    assert!(page.contains(&revoke), "{page}");
    let revoked = admin.post_form(&revoke, &[]).await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER, "{}", revoked.body);
    assert_eq!(
        revoked.location(),
        Some(format!("/studies/{study}#raters").as_str())
    );

    // Her cookie, her bearer token and her link no longer work, and her held item is gone.
    assert_eq!(ann.get("/rate/item").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(ann.get("/rate").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        ann.get("/api/rater/item").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        ann_api.get("/api/rater/item").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        answer(&mut ann_api, &held["assignment_id"]).await.status,
        StatusCode::UNAUTHORIZED
    );
    let relink = app.client().get(&format!("/r/{}", tokens[0])).await;
    assert_eq!(relink.status, StatusCode::UNAUTHORIZED);
    let progress = app.store().study_progress(study).await.unwrap();
    assert_eq!((progress.judged, progress.in_progress), (1, 0));

    // The slot is back: Bo is served the solution Ann held, and the study completes, with
    // Ann's judgement counted.
    let freed = bo.get("/api/rater/item").await.json();
    assert_eq!(freed["status"], "item", "{freed}");
    assert_eq!(freed["solution"], held["solution"]);
    assert_eq!(
        answer(&mut bo, &freed["assignment_id"]).await.status,
        StatusCode::OK
    );
    assert_eq!(bo.get("/api/rater/item").await.json()["status"], "finished");
    let progress = app.store().study_progress(study).await.unwrap();
    assert_eq!(
        (progress.judged, progress.wanted, progress.in_progress),
        (2, 2, 0)
    );
    let ann_now = rater_named(&app, study, "rater 0").await;
    assert_eq!(ann_now.judgements, 1);
    let revoked_at = ann_now.revoked_at.expect("Ann is revoked");
    assert_eq!(rater_named(&app, study, "rater 1").await.revoked_at, None);

    // Revoking again changes nothing; the page shows the state and no button for Ann.
    app.state.clock.advance_ms(1_000);
    assert_eq!(
        admin.post_form(&revoke, &[]).await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        rater_named(&app, study, "rater 0").await.revoked_at,
        Some(revoked_at)
    );
    let page = admin.get(&format!("/studies/{study}")).await.body;
    assert!(page.contains("revoked "), "{page}");
    assert!(!page.contains(&revoke));
    assert_eq!(page.matches("/revoke\"").count(), 1);

    // A rater of no such study, or of another one, is not found.
    let other = app.fixture(1, 1, 1, 45_000).await;
    let elsewhere = format!("/studies/{}/raters/{ann_id}/revoke", other.study_id);
    assert_eq!(
        admin.post_form(&elsewhere, &[]).await.status,
        StatusCode::NOT_FOUND
    );
    let unknown = format!("/studies/{study}/raters/{}/revoke", Uuid::new_v4());
    assert_eq!(
        admin.post_form(&unknown, &[]).await.status,
        StatusCode::NOT_FOUND
    );

    // A revoked rater's name may be invited again: a replacement link.
    let again = admin
        .post_form(
            &format!("/studies/{study}/invites"),
            &[("names", "rater 0")],
        )
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(link_paths(&again.body).len(), 1);
}
on_both_backends!(revoking_stops_the_link_and_returns_the_slot);

async fn researchers_see_progress_but_cannot_revoke_or_invite(backend: Backend) {
    let app = TestApp::start(backend).await;
    let fixture = app.fixture(2, 1, 1, 45_000).await;
    let study = fixture.study_id;
    let tokens = app.invite(study, 1).await;
    let mut rater = app.rater_client(&tokens[0]).await;
    let rater_id = raters(&app, study).await[0].rater.id;

    let mut researcher = app.staff_client("rita", UserRole::Researcher).await;
    let page = researcher.get(&format!("/studies/{study}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("rater 0"));
    assert!(page.body.contains("id=\"rater-progress\""));
    assert!(!page.body.contains("/revoke"), "{}", page.body);
    assert!(!page.body.contains("id=\"invite-form\""));
    let refused = researcher
        .post_form(&format!("/studies/{study}/raters/{rater_id}/revoke"), &[])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(
        researcher
            .get(&format!("/studies/{study}/invites"))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let upload = researcher
        .post_multipart(
            &format!("/studies/{study}/invites"),
            &[],
            b"name,email\nMallory,m@example.org\n",
        )
        .await;
    assert_eq!(upload.status, StatusCode::FORBIDDEN);

    // Nothing changed: the link still works and nobody new was invited.
    assert_eq!(raters(&app, study).await[0].revoked_at, None);
    assert_eq!(raters(&app, study).await.len(), 1);
    assert_eq!(rater.get("/api/rater/item").await.json()["status"], "item");
}
on_both_backends!(researchers_see_progress_but_cannot_revoke_or_invite);

/// `rater invite` without `--base-url` prints links to the address the server last started
/// with on this database, and before any server has run it asks for the address instead of
/// printing links to a guessed one.
async fn cli_invite_links_point_at_the_running_server(backend: Backend) {
    use std::process::{Command, Stdio};
    let app = TestApp::start(backend).await;
    let fixture = app.fixture(2, 1, 1, 45_000).await;
    let study = app.store().study(fixture.study_id).await.unwrap().name;
    let invite = |name: &str| {
        Command::new(env!("CARGO_BIN_EXE_legibility"))
            .args(["rater", "invite", "--study", &study, name])
            .env("DATABASE_URL", &app.db.url)
            .env_remove("LEGIBILITY_PUBLIC_URL")
            .output()
            .expect("run legibility rater invite")
    };
    let refused = invite("Ann");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--base-url"), "{stderr}");
    assert!(!stderr.contains("8080"), "{stderr}");

    let port = common::free_port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_legibility"))
        .args([
            "serve",
            "--no-worker",
            "--bind",
            &format!("127.0.0.1:{port}"),
        ])
        .env("DATABASE_URL", &app.db.url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start legibility serve");
    // An open port is not enough: `serve` records its address after binding and before it
    // answers requests, so wait for an answer (stopping earlier raced the recording).
    let answers = || {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
        let mut reply = String::new();
        stream
            .write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .is_ok()
            && stream.read_to_string(&mut reply).is_ok()
            && reply.split_whitespace().nth(1) == Some("200")
    };
    let started = std::time::Instant::now();
    while !answers() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the server never answered"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    common::terminate(&server);
    let _ = server.wait();

    let printed = invite("Bo");
    assert!(printed.status.success(), "{printed:?}");
    let stdout = String::from_utf8_lossy(&printed.stdout);
    assert!(
        stdout.starts_with(&format!("Bo\thttp://127.0.0.1:{port}/r/")),
        "{stdout}"
    );
}
on_both_backends!(cli_invite_links_point_at_the_running_server);

//! Access: login throttling per (account, client address) with growing waits and Retry-After,
//! staff sessions listed and ended, personal API tokens for scripts (report data only), and
//! 401 JSON instead of the login redirect for API clients. Both databases.

mod common;

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use common::{Backend, Client, TestApp, TestResponse, urlencode};
use legibility::auth;
use legibility::domain::{StudyStatus, UserRole};

const RITA_PASSWORD: &str = "rita's long password";
const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const CHROME_MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

/// A login form post as the server sees it from TCP peer `ip` (the server's ConnectInfo).
fn login_request(ip: &str, username: &str, password: &str, user_agent: &str) -> Request<Body> {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri("/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::USER_AGENT, user_agent)
        .body(Body::from(format!(
            "username={}&password={}",
            urlencode(username),
            urlencode(password)
        )))
        .unwrap();
    let peer = SocketAddr::new(ip.parse().unwrap(), 50_000);
    request.extensions_mut().insert(ConnectInfo(peer));
    request
}

async fn login_from(app: &TestApp, ip: &str, username: &str, password: &str) -> TestResponse {
    app.client()
        .send(login_request(ip, username, password, FIREFOX))
        .await
}

/// A browser logged in as `username` from `ip` with `user_agent`.
async fn browser<'a>(
    app: &'a TestApp,
    ip: &str,
    username: &str,
    password: &str,
    user_agent: &str,
) -> Client<'a> {
    let mut client = app.client();
    let response = client
        .send(login_request(ip, username, password, user_agent))
        .await;
    assert_eq!(response.status, StatusCode::SEE_OTHER, "{}", response.body);
    client
}

async fn add_user(app: &TestApp, name: &str, password: &str, role: UserRole) -> uuid::Uuid {
    let hash = auth::hash_password(password).unwrap();
    app.store()
        .create_user(name, &hash, role, app.now())
        .await
        .unwrap()
        .id
}

fn retry_after(response: &TestResponse) -> i64 {
    response
        .headers
        .get(header::RETRY_AFTER)
        .unwrap_or_else(|| panic!("429 without Retry-After: {:?}", response.headers))
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// The lockout test: 50 wrong passwords for an account from one address never stop
/// its owner from logging in from another; the guessing address waits ever longer (doubling up
/// to 15 minutes), told so by `Retry-After`, and even the right password is not checked while
/// it waits.
async fn a_wrong_password_storm_locks_out_only_its_own_address(backend: Backend) {
    let app = TestApp::start(backend).await;
    add_user(&app, "rita", RITA_PASSWORD, UserRole::Researcher).await;

    // A burst: the first five failures are free, the sixth attempt must wait a second.
    for i in 0..auth::ACCOUNT_FREE_FAILURES {
        let response = login_from(&app, "10.0.0.1", "rita", "guess").await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    let refused = login_from(&app, "10.0.0.1", "rita", "guess").await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(retry_after(&refused), 1);

    // Keep guessing, each time as soon as allowed: the waits double up to the cap. (Per number
    // of failures so far, the first Retry-After seen.)
    let mut waits = std::collections::BTreeMap::new();
    let mut wrong = auth::ACCOUNT_FREE_FAILURES;
    while wrong < 50 {
        let response = login_from(&app, "10.0.0.1", "rita", "guess").await;
        match response.status {
            StatusCode::UNAUTHORIZED => wrong += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                let seconds = retry_after(&response);
                waits.entry(wrong).or_insert(seconds);
                app.state.clock.advance_ms(seconds * 1000);
            }
            other => panic!("unexpected {other}: {}", response.body),
        }
    }
    let expected: Vec<(i64, i64)> = (auth::ACCOUNT_FREE_FAILURES..50)
        .map(|n| {
            (
                n,
                auth::login_delay_ms(n, auth::ACCOUNT_FREE_FAILURES) / 1000,
            )
        })
        .collect();
    let waits: Vec<(i64, i64)> = waits.into_iter().collect();
    assert_eq!(waits.len(), expected.len(), "{waits:?}");
    for (got, want) in waits.iter().zip(&expected) {
        // Retry-After counts from the last failure, rounded up: a stall of the machine
        // between two requests may shave a second off.
        assert!(
            got.0 == want.0 && (got.1 == want.1 || got.1 == want.1 - 1),
            "{waits:?} vs {expected:?}"
        );
    }
    let seconds: Vec<i64> = expected.iter().map(|&(_, s)| s).collect();
    assert_eq!(&seconds[..5], &[1, 2, 4, 8, 16]);
    assert_eq!(*seconds.last().unwrap(), 900);

    // The right password from the guessing address: refused unchecked, no session.
    let blocked = login_from(&app, "10.0.0.1", "rita", RITA_PASSWORD).await;
    assert_eq!(blocked.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&blocked) >= 899, "{:?}", blocked.headers);
    assert!(blocked.headers.get(header::SET_COOKIE).is_none());
    assert!(
        blocked
            .body
            .contains("Too many failed logins from your address: try again in 15 minutes"),
        "{}",
        blocked.body
    );

    // The owner, from another address, logs in at once.
    let owner = login_from(&app, "10.0.0.2", "rita", RITA_PASSWORD).await;
    assert_eq!(owner.status, StatusCode::SEE_OTHER, "{}", owner.body);
    assert_eq!(owner.location(), Some("/studies"));
    assert!(owner.headers.get(header::SET_COOKIE).is_some());
    // … which forgives the guessing address nothing.
    let still = login_from(&app, "10.0.0.1", "rita", RITA_PASSWORD).await;
    assert_eq!(still.status, StatusCode::TOO_MANY_REQUESTS);

    // Once the wait is over the right password works there too. It forgets the account's
    // failures from that address, not the address's own count over all accounts.
    app.state.clock.advance_ms(auth::LOGIN_MAX_DELAY_MS);
    let later = login_from(&app, "10.0.0.1", "rita", RITA_PASSWORD).await;
    assert_eq!(later.status, StatusCode::SEE_OTHER, "{}", later.body);
    let rows = throttle_rows(&app).await;
    // (10.0.0.2's success left nothing worth keeping; it was swept at the next attempt.)
    assert_eq!(
        rows,
        [("".into(), "10.0.0.1".into(), 50)],
        "the guessing address's count only, none for the accounts that logged in"
    );

    // An hour after its last failure a key is forgotten (deleted at the next attempt).
    app.state.clock.advance_ms(auth::LOGIN_FORGET_MS + 1);
    let fresh = login_from(&app, "10.0.0.9", "ron", "guess").await;
    assert_eq!(fresh.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        throttle_rows(&app).await,
        [
            ("".into(), "10.0.0.9".into(), 1),
            ("ron".into(), "10.0.0.9".into(), 1)
        ]
    );
}

/// The throttle table: (username, address, failures), in order.
async fn throttle_rows(app: &TestApp) -> Vec<(String, String, i64)> {
    with_raw_pool!(app.db.url, pool => {
        sqlx::query_as(
            "SELECT username, address, failures FROM login_throttle ORDER BY address, username",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
    })
}
on_both_backends!(a_wrong_password_storm_locks_out_only_its_own_address);

/// One address trying many usernames (spraying) is slowed over all accounts, including for a
/// right password; other addresses are not. Unknown usernames count like known ones.
async fn spraying_usernames_from_one_address_is_slowed(backend: Backend) {
    let app = TestApp::start(backend).await;
    add_user(&app, "rita", RITA_PASSWORD, UserRole::Researcher).await;
    for i in 0..auth::ADDRESS_FREE_FAILURES {
        let response = login_from(&app, "10.0.0.4", &format!("user{i}"), "guess").await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED, "user{i}");
    }
    let sprayed = login_from(&app, "10.0.0.4", "rita", RITA_PASSWORD).await;
    assert_eq!(sprayed.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(retry_after(&sprayed), 1);
    let elsewhere = login_from(&app, "10.0.0.5", "rita", RITA_PASSWORD).await;
    assert_eq!(elsewhere.status, StatusCode::SEE_OTHER);
    // Empty usernames are refused before the throttle (its '' row is the address's own).
    let empty = login_from(&app, "10.0.0.5", "  ", "guess").await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
    assert!(empty.body.contains("Enter your username and password"));
}
on_both_backends!(spraying_usernames_from_one_address_is_slowed);

/// Guesses sent all at once cannot slip past the throttle while the first ones are being
/// checked: each attempt is counted before its password is.
async fn parallel_guesses_are_counted_before_they_are_checked(backend: Backend) {
    use tower::ServiceExt;
    let app = TestApp::start(backend).await;
    add_user(&app, "rita", RITA_PASSWORD, UserRole::Researcher).await;
    let mut guesses = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let router = app.router.clone();
        guesses.spawn(async move {
            let request = login_request("10.0.0.7", "rita", "guess", FIREFOX);
            router.oneshot(request).await.map(|r| r.status())
        });
    }
    let mut statuses = Vec::new();
    while let Some(done) = guesses.join_next().await {
        statuses.push(done.unwrap().unwrap());
    }
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    // Five free failures; a sixth only if the machine stalled past the first 1 s wait.
    assert!((5..=6).contains(&checked), "{statuses:?}");
    assert_eq!(checked + refused, 20, "{statuses:?}");
}
on_both_backends!(parallel_guesses_are_counted_before_they_are_checked);

/// The id of the session opened from `address`, read from the store.
async fn session_from(app: &TestApp, user: uuid::Uuid, address: &str) -> uuid::Uuid {
    app.store()
        .staff_sessions(Some(user), "", app.now())
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.address == address)
        .unwrap_or_else(|| panic!("no session from {address}"))
        .id
}

/// Staff see their sessions (address, browser, this one) and end any of them, or all others,
/// at once; admins see and end everyone's; nobody else can end someone's session.
async fn sessions_are_listed_and_ended_at_once(backend: Backend) {
    let app = TestApp::start(backend).await;
    let rita = add_user(&app, "rita", RITA_PASSWORD, UserRole::Researcher).await;
    let ada = add_user(&app, "ada", "ada's long password", UserRole::Admin).await;
    let mut laptop = browser(&app, "10.1.1.1", "rita", RITA_PASSWORD, FIREFOX).await;
    let mut office = browser(&app, "10.1.1.2", "rita", RITA_PASSWORD, CHROME_MAC).await;

    let page = laptop.get("/account").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    for text in [
        "10.1.1.1",
        "10.1.1.2",
        "Firefox on Linux",
        "Chrome on macOS",
    ] {
        assert!(page.body.contains(text), "{text} missing: {}", page.body);
    }
    assert_eq!(page.body.matches("(this session)").count(), 1);
    let this_row = page
        .body
        .split("<tr>")
        .find(|row| row.contains("(this session)"))
        .unwrap();
    assert!(this_row.contains("Firefox on Linux"), "{this_row}");

    // Last use is noted (to the minute).
    app.state.clock.advance_ms(120_000);
    let used_at = app.now();
    assert_eq!(office.get("/studies").await.status, StatusCode::OK);
    let sessions = app
        .store()
        .staff_sessions(Some(rita), "", app.now())
        .await
        .unwrap();
    let office_session = sessions.iter().find(|s| s.address == "10.1.1.2").unwrap();
    assert!(office_session.last_used_at >= used_at, "{office_session:?}");

    // The laptop ends the office session: the office is logged out at once.
    let office_id = session_from(&app, rita, "10.1.1.2").await;
    let ended = laptop
        .post_form(&format!("/account/sessions/{office_id}/end"), &[])
        .await;
    assert_eq!(ended.location(), Some("/account"));
    assert_eq!(office.get("/studies").await.location(), Some("/login"));
    assert_eq!(laptop.get("/studies").await.status, StatusCode::OK);

    // "End all my other sessions" ends every other one, keeps this one.
    let mut phone = browser(&app, "10.1.1.3", "rita", RITA_PASSWORD, FIREFOX).await;
    let mut tablet = browser(&app, "10.1.1.4", "rita", RITA_PASSWORD, FIREFOX).await;
    let mut admin = browser(&app, "10.1.1.9", "ada", "ada's long password", FIREFOX).await;
    let others = laptop.post_form("/account/sessions/end-others", &[]).await;
    assert_eq!(others.location(), Some("/account"));
    assert_eq!(phone.get("/studies").await.location(), Some("/login"));
    assert_eq!(tablet.get("/studies").await.location(), Some("/login"));
    assert_eq!(laptop.get("/studies").await.status, StatusCode::OK);
    // Someone else's sessions are untouched, and not rita's to end.
    assert_eq!(admin.get("/studies").await.status, StatusCode::OK);
    let ada_session = session_from(&app, ada, "10.1.1.9").await;
    let foreign = laptop
        .post_form(&format!("/account/sessions/{ada_session}/end"), &[])
        .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
    assert_eq!(admin.get("/studies").await.status, StatusCode::OK);
    assert_eq!(
        laptop.get("/admin/sessions").await.status,
        StatusCode::FORBIDDEN
    );

    // The admin lists every staff session and ends rita's.
    let all = admin.get("/admin/sessions").await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.body);
    assert!(all.body.contains("rita") && all.body.contains("10.1.1.1"));
    assert!(all.body.contains("10.1.1.9"));
    let laptop_id = session_from(&app, rita, "10.1.1.1").await;
    let ended = admin
        .post_form(&format!("/admin/sessions/{laptop_id}/end"), &[])
        .await;
    assert_eq!(ended.location(), Some("/admin/sessions"));
    assert_eq!(laptop.get("/studies").await.location(), Some("/login"));

    // Ending one's own session is logging out.
    let ended = admin
        .post_form(&format!("/account/sessions/{ada_session}/end"), &[])
        .await;
    assert_eq!(ended.location(), Some("/login"));
    assert!(admin.cookies.is_empty(), "{:?}", admin.cookies);
    assert!(
        app.store()
            .staff_sessions(None, "", app.now())
            .await
            .unwrap()
            .is_empty()
    );
}
on_both_backends!(sessions_are_listed_and_ended_at_once);

/// The token shown once on the page after creating it.
fn shown_token(page: &TestResponse) -> String {
    page.body
        .split("<code id=\"token-value\">")
        .nth(1)
        .and_then(|rest| rest.split("</code>").next())
        .unwrap_or_else(|| panic!("no token on the page: {}", page.body))
        .to_string()
}

/// A script's request with `Authorization: Bearer token`.
async fn as_script(app: &TestApp, method: Method, path: &str, token: &str) -> TestResponse {
    app.send(
        Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from("status=closed"))
            .unwrap(),
    )
    .await
}

fn assert_json_401(response: &TestResponse, what: &str) {
    assert_eq!(
        response.status,
        StatusCode::UNAUTHORIZED,
        "{what}: {}",
        response.body
    );
    assert!(
        response.json()["error"].as_str().is_some(),
        "{what}: {}",
        response.body
    );
    let challenge = response.headers[header::WWW_AUTHENTICATE].to_str().unwrap();
    assert!(challenge.starts_with("Bearer"), "{what}: {challenge}");
}

/// Personal API tokens: created on the account page and shown once, stored only as a hash,
/// accepted on the report data and downloads (and nowhere else), revoked or expired → 401.
async fn api_tokens_read_reports_and_nothing_else(backend: Backend) {
    let app = TestApp::start(backend).await;
    let fixture = app.fixture(3, 1, 1, 45_000).await;
    let raters = app.invite(fixture.study_id, 2).await;
    app.judge_all(&raters, common::truthful).await;
    let mut rita = app.staff_client("rita", UserRole::Researcher).await;
    let study = fixture.study_id;

    let empty = rita.get("/account").await;
    assert!(empty.body.contains("No tokens yet"), "{}", empty.body);
    let created = rita
        .post_form(
            "/account/tokens",
            &[("name", " analysis notebook "), ("expires_in_days", "")],
        )
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    let token = shown_token(&created);
    assert!(token.starts_with(auth::API_TOKEN_PREFIX), "{token}");
    assert!(created.body.contains("pd.read_csv(url, storage_options="));
    // Shown once: the list names it but never shows it again.
    let listed = rita.get("/account").await;
    assert!(listed.body.contains("analysis notebook"));
    assert!(!listed.body.contains(&token));
    // The database holds its hash only.
    let stored: Vec<(String, String)> = with_raw_pool!(app.db.url, pool => {
        sqlx::query_as("SELECT name, token_sha FROM api_tokens").fetch_all(&pool).await.unwrap()
    });
    assert_eq!(
        stored,
        vec![("analysis notebook".to_string(), auth::token_hash(&token))]
    );

    // The token reads the report and the downloads.
    let report = as_script(
        &app,
        Method::GET,
        &format!("/studies/{study}/report.json"),
        &token,
    )
    .await;
    assert_eq!(report.status, StatusCode::OK, "{}", report.body);
    assert_eq!(report.json()["judgements"], 6);
    let csv = as_script(
        &app,
        Method::GET,
        &format!("/studies/{study}/attempts.csv"),
        &token,
    )
    .await;
    assert_eq!(csv.status, StatusCode::OK, "{}", csv.body);
    assert_eq!(csv.body.lines().count(), 7, "{}", csv.body);
    assert!(csv.body.starts_with("rater_id,"));
    for download in ["attempts.jsonl", "attempts.parquet"] {
        let response = as_script(
            &app,
            Method::GET,
            &format!("/studies/{study}/{download}"),
            &token,
        )
        .await;
        assert_eq!(response.status, StatusCode::OK, "{download}");
    }
    let last_used: Option<i64> = with_raw_pool!(app.db.url, pool => {
        sqlx::query_scalar("SELECT last_used_at FROM api_tokens").fetch_one(&pool).await.unwrap()
    });
    assert!(last_used.is_some(), "the token's use was not noted");

    // Nothing else: not a page, not a form, not minting more tokens.
    let closing = as_script(
        &app,
        Method::POST,
        &format!("/studies/{study}/status"),
        &token,
    )
    .await;
    assert_json_401(&closing, "POST status");
    assert_eq!(
        app.store().study(study).await.unwrap().status,
        StudyStatus::Open,
        "a token changed a study"
    );
    for (method, path) in [
        (Method::GET, format!("/studies/{study}")),
        (Method::GET, format!("/studies/{study}/report")),
        (Method::GET, "/account".to_string()),
        (Method::POST, "/account/tokens".to_string()),
        (Method::GET, "/admin/sessions".to_string()),
    ] {
        let response = as_script(&app, method.clone(), &path, &token).await;
        assert_json_401(&response, &format!("{method} {path}"));
    }
    let held: i64 = with_raw_pool!(app.db.url, pool => {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM api_tokens").fetch_one(&pool).await.unwrap()
    });
    assert_eq!(held, 1);
    // A rater's invite token is no staff token (and still works on the rater API).
    let rater_try = as_script(
        &app,
        Method::GET,
        &format!("/studies/{study}/report.json"),
        &raters[0],
    )
    .await;
    assert_json_401(&rater_try, "rater token");
    let rater_api = as_script(&app, Method::GET, "/api/rater/item", &raters[0]).await;
    assert_eq!(rater_api.status, StatusCode::OK, "{}", rater_api.body);

    // Bad input: a clear message, nothing stored.
    for (fields, status, message) in [
        (
            vec![("name", "  ")],
            StatusCode::UNPROCESSABLE_ENTITY,
            "give the token a name",
        ),
        (
            vec![("name", "analysis notebook")],
            StatusCode::CONFLICT,
            "already have a token named",
        ),
        (
            vec![("name", "x"), ("expires_in_days", "soon")],
            StatusCode::BAD_REQUEST,
            "whole number of days",
        ),
    ] {
        let refused = rita.post_form("/account/tokens", &fields).await;
        assert_eq!(refused.status, status, "{fields:?}: {}", refused.body);
        assert!(refused.body.contains(message), "{}", refused.body);
    }

    // Revoked: 401 at once.
    let id: uuid::Uuid = with_raw_pool!(app.db.url, pool => {
        sqlx::query_scalar("SELECT id FROM api_tokens").fetch_one(&pool).await.unwrap()
    });
    let mut other = app.staff_client("ron", UserRole::Researcher).await;
    let foreign = other
        .post_form(&format!("/account/tokens/{id}/revoke"), &[])
        .await;
    assert_eq!(
        foreign.status,
        StatusCode::NOT_FOUND,
        "ron revoked rita's token"
    );
    let revoked = rita
        .post_form(&format!("/account/tokens/{id}/revoke"), &[])
        .await;
    assert_eq!(revoked.location(), Some("/account"));
    let after = as_script(
        &app,
        Method::GET,
        &format!("/studies/{study}/report.json"),
        &token,
    )
    .await;
    assert_json_401(&after, "revoked token");
    assert!(
        after.body.contains("unknown, revoked or expired"),
        "{}",
        after.body
    );

    // Expired: works until its day is over, then 401.
    let short = rita
        .post_form(
            "/account/tokens",
            &[("name", "one day"), ("expires_in_days", "1")],
        )
        .await;
    let short = shown_token(&short);
    let csv_path = format!("/studies/{study}/attempts.csv");
    assert_eq!(
        as_script(&app, Method::GET, &csv_path, &short).await.status,
        StatusCode::OK
    );
    app.state.clock.advance_ms(24 * 60 * 60 * 1000);
    assert_json_401(
        &as_script(&app, Method::GET, &csv_path, &short).await,
        "expired",
    );
    // (The session cookie has expired too by now; log in again to see the list.)
    let mut rita = app.client();
    rita.post_form(
        "/login",
        &[("username", "rita"), ("password", "a long enough password")],
    )
    .await;
    assert!(rita.get("/account").await.body.contains("(expired)"));
}
on_both_backends!(api_tokens_read_reports_and_nothing_else);

/// Without credentials, API clients get 401 JSON with `WWW-Authenticate: Bearer`; browsers
/// navigating to staff pages keep the redirect to the login page.
async fn api_clients_get_401_json_and_browsers_the_login_page(backend: Backend) {
    let app = TestApp::start(backend).await;
    let fixture = app.fixture(2, 1, 1, 45_000).await;
    let study = fixture.study_id;
    let mut anonymous = app.client();
    for path in [
        format!("/studies/{study}/report.json"),
        format!("/studies/{study}/attempts.csv"),
        format!("/studies/{study}/attempts.parquet"),
    ] {
        assert_json_401(&anonymous.get(&path).await, &path);
    }
    let get_with_accept = |path: String, accept: &'static str| {
        Request::builder()
            .uri(path)
            .header(header::ACCEPT, accept)
            .body(Body::empty())
            .unwrap()
    };
    let navigating = anonymous
        .send(get_with_accept(
            format!("/studies/{study}/report"),
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ))
        .await;
    assert_eq!(navigating.status, StatusCode::SEE_OTHER);
    assert_eq!(navigating.location(), Some("/login"));
    assert_eq!(anonymous.get("/studies").await.location(), Some("/login"));
    let script = anonymous
        .send(get_with_accept("/studies".into(), "application/json"))
        .await;
    assert_json_401(&script, "Accept: application/json");
}
on_both_backends!(api_clients_get_401_json_and_browsers_the_login_page);

/// A researcher's notebook: pandas reads the downloads from the running server (real TCP, the
/// peer address as `serve` passes it) with `storage_options={"Authorization": "Bearer …"}`.
async fn pandas_reads_the_downloads_with_a_token(backend: Backend) {
    let app = TestApp::start(backend).await;
    let fixture = app.fixture(3, 1, 1, 45_000).await;
    let raters = app.invite(fixture.study_id, 2).await;
    app.judge_all(&raters, common::truthful).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let router = app.router.clone();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });

    // Log in over TCP: the session notes the real peer address.
    let user = add_user(&app, "rita", RITA_PASSWORD, UserRole::Researcher).await;
    let body = format!("username=rita&password={}", urlencode(RITA_PASSWORD));
    let answer = raw_http(
        address,
        &format!(
            "POST /login HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 303"), "{answer}");
    let cookie = answer
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("no session cookie: {answer}"))
        .to_string();
    let sessions = app
        .store()
        .staff_sessions(Some(user), "", app.now())
        .await
        .unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].address, "127.0.0.1");

    // Create a token on the account page, as a person would.
    let body = "name=notebook&expires_in_days=30";
    let page = raw_http(
        address,
        &format!(
            "POST /account/tokens HTTP/1.1\r\nHost: {address}\r\nCookie: {cookie}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await;
    let token = page
        .split("<code id=\"token-value\">")
        .nth(1)
        .and_then(|rest| rest.split("</code>").next())
        .unwrap_or_else(|| panic!("no token on the page: {page}"))
        .to_string();

    let python = std::env::var("LEGIBILITY_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/read_with_token.py"
    );
    let args = [
        format!("http://{address}"),
        fixture.study_id.to_string(),
        token,
        "6".to_string(),
    ];
    let output = tokio::task::spawn_blocking({
        let python = python.clone();
        move || {
            std::process::Command::new(&python)
                .arg(script)
                .args(args)
                .output()
        }
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("cannot run {python} (set LEGIBILITY_TEST_PYTHON): {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "pandas could not read the downloads with the token (needs pandas and pyarrow)\n{stdout}\n{stderr}"
    );
    assert!(stdout.starts_with("ok: 6 rows"), "{stdout}");
}
on_both_backends!(pandas_reads_the_downloads_with_a_token);

/// Sends `request` to the server at `address` and reads the whole answer (the request says
/// `Connection: close`).
async fn raw_http(address: SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

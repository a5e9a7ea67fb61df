//! The authorisation matrix: every route of the app × every kind of caller (anonymous, rater,
//! researcher, admin), on both databases. The routes are read from the handlers' source, so a
//! new route without a rule here fails the test, as does a rule for a route that is gone.

mod common;

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use common::{Backend, Client, TestApp, TestResponse};
use legibility::domain::UserRole;

/// Who may use a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Anyone (login, static files, health, the invite link itself, the language switch).
    Public,
    /// Only a rater holding a valid link (cookie or bearer token).
    Rater,
    /// Researchers and admins.
    Staff,
    /// Admins only.
    Admin,
}

use Access::{Admin, Public, Rater, Staff};

/// Every route and method, with who may use it.
const RULES: &[(&str, &str, Access)] = &[
    ("GET", "/", Public),
    ("GET", "/static/{file}", Public),
    ("GET", "/healthz", Public),
    ("GET", "/lang/{code}", Public),
    ("GET", "/r/{token}", Public),
    ("GET", "/s/{link}", Public),
    ("GET", "/login", Public),
    ("POST", "/login", Public),
    ("GET", "/rate", Rater),
    ("GET", "/rate/item", Rater),
    ("POST", "/rate/item", Rater),
    ("GET", "/rate/item/step", Rater),
    ("POST", "/rate/item/step", Rater),
    ("POST", "/rate/consent", Rater),
    ("POST", "/rate/background", Rater),
    ("POST", "/rate/comprehension", Rater),
    ("GET", "/api/rater/item", Rater),
    ("POST", "/api/rater/judgements", Rater),
    ("POST", "/api/rater/steps", Rater),
    ("GET", "/studies", Staff),
    ("POST", "/studies", Staff),
    ("GET", "/studies/new", Staff),
    ("GET", "/studies/{id}", Staff),
    ("POST", "/studies/{id}/status", Staff),
    ("GET", "/studies/{id}/edit", Staff),
    ("POST", "/studies/{id}/edit", Staff),
    ("POST", "/studies/{id}/score", Staff),
    ("GET", "/studies/{id}/report", Staff),
    ("GET", "/studies/{id}/report.json", Staff),
    ("GET", "/studies/{id}/attempts.csv", Staff),
    ("GET", "/studies/{id}/attempts.jsonl", Staff),
    ("GET", "/studies/{id}/attempts.parquet", Staff),
    ("GET", "/studies/{id}/solutions", Staff),
    ("GET", "/studies/{id}/solutions.csv", Staff),
    ("GET", "/studies/{id}/solutions.json", Staff),
    ("GET", "/studies/{id}/solutions/{solution_id}", Staff),
    ("GET", "/admin/import", Admin),
    ("POST", "/admin/import", Admin),
    ("GET", "/studies/{id}/invites", Admin),
    ("POST", "/studies/{id}/invites", Admin),
    ("GET", "/studies/{id}/panel", Admin),
    ("POST", "/studies/{id}/panel", Admin),
    ("POST", "/studies/{id}/panel/completions", Admin),
    ("POST", "/studies/{id}/panel/bonus", Admin),
    ("POST", "/studies/{id}/panel/returns", Admin),
    ("POST", "/studies/{id}/panel/delete", Admin),
    ("POST", "/studies/{id}/panel/bonuses.csv", Admin),
    ("POST", "/studies/{id}/panel/intake", Admin),
    ("GET", "/studies/{id}/panel/review.csv", Admin),
    ("POST", "/api/studies/{id}/panel/returns", Admin),
    ("POST", "/studies/{id}/raters/{rater_id}/revoke", Admin),
    ("GET", "/admin/jobs", Admin),
    ("GET", "/admin/jobs.json", Admin),
    ("POST", "/admin/jobs/{id}/cancel", Admin),
    ("GET", "/admin/checkpoints", Admin),
    ("POST", "/admin/checkpoints", Admin),
    ("GET", "/admin/verifiers", Admin),
    ("POST", "/admin/verifiers/train", Admin),
    ("GET", "/admin/runs", Admin),
    ("POST", "/admin/runs", Admin),
    ("GET", "/runs/{id}", Staff),
    ("GET", "/runs/{id}/report.json", Staff),
    ("POST", "/runs/{id}/study", Staff),
    ("GET", "/api/openapi.json", Public),
    ("GET", "/metrics", Admin),
    ("GET", "/account", Staff),
    ("POST", "/account/tokens", Staff),
    ("POST", "/account/tokens/{id}/revoke", Staff),
    ("POST", "/account/sessions/{id}/end", Staff),
    ("POST", "/account/sessions/end-others", Staff),
    ("GET", "/admin/sessions", Admin),
    ("POST", "/admin/sessions/{id}/end", Admin),
    // Last: it ends the caller's session.
    ("POST", "/logout", Public),
];

#[test]
fn every_route_has_a_rule() {
    let found = common::routes_in_source();
    assert!(found.len() >= 30, "the route scan found only {found:?}");
    let ruled: BTreeSet<(String, String)> = RULES
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    let missing: Vec<_> = found.difference(&ruled).collect();
    assert!(
        missing.is_empty(),
        "routes without an authorisation rule in tests/authz.rs: {missing:?}"
    );
    let stale: Vec<_> = ruled.difference(&found).collect();
    assert!(
        stale.is_empty(),
        "rules for routes that no longer exist: {stale:?}"
    );
}

/// A kind of caller: its name, its cookies, and which access levels it holds.
type Caller<'app, 'c> = (&'static str, &'c Client<'app>, fn(Access) -> bool);

/// A refusal: 401/403, or the staff pages' redirect to the login page.
fn refused(response: &TestResponse) -> bool {
    matches!(
        response.status,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
    ) || (response.status == StatusCode::SEE_OTHER && response.location() == Some("/login"))
}

async fn every_route_refuses_whoever_its_rule_excludes(backend: Backend) {
    let app = TestApp::start(backend).await;
    let fixture = app.fixture(3, 1, 1, 45_000).await;
    let tokens = app.invite(fixture.study_id, 2).await;
    let raters = app.store().rater_progress(fixture.study_id).await.unwrap();
    let rater = app.rater_client(&tokens[0]).await;
    let researcher = app.staff_client("rhea", UserRole::Researcher).await;
    let admin = app.staff_client("ada", UserRole::Admin).await;
    let callers: [Caller<'_, '_>; 4] = [
        ("anonymous", &app.client(), |a| a == Public),
        ("rater", &rater, |a| matches!(a, Public | Rater)),
        ("researcher", &researcher, |a| matches!(a, Public | Staff)),
        ("admin", &admin, |a| matches!(a, Public | Staff | Admin)),
    ];
    let mut checked = 0;
    for (method, route, access) in RULES {
        let path = route
            .replace("{id}", &fixture.study_id.to_string())
            // The second rater: revoking them leaves the first one's link working.
            .replace("{rater_id}", &raters[1].rater.id.to_string())
            .replace("{token}", &tokens[0])
            .replace("{link}", "no-such-link")
            .replace("{code}", "en")
            .replace("{file}", "style.css");
        for (who, base, allowed) in &callers {
            let mut client = Client {
                app: &app,
                cookies: base.cookies.clone(),
                bearer: None,
            };
            let request = Request::builder()
                .method(Method::from_bytes(method.as_bytes()).unwrap())
                .uri(&path)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::empty())
                .unwrap();
            let response = client.send(request).await;
            assert!(
                !response.status.is_server_error(),
                "{method} {path} as {who}: {} {}",
                response.status,
                response.body
            );
            if allowed(*access) {
                // Public routes may still say 401 to a wrong login; nobody may be forbidden.
                let ok = if *access == Public {
                    response.status != StatusCode::FORBIDDEN
                } else {
                    !refused(&response)
                };
                assert!(ok, "{method} {path} refused {who}: {}", response.status);
            } else {
                assert!(
                    refused(&response),
                    "{method} {path} let {who} through ({access:?} only): {} {}",
                    response.status,
                    response.body
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, RULES.len() * 4);
}
on_both_backends!(every_route_refuses_whoever_its_rule_excludes);

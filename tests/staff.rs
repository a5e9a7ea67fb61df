//! Staff accounts and pages: login with argon2 hashes, roles (admin vs researcher), study
//! creation and invitations through the forms, cross-site form posts refused.

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use common::{Backend, TestApp};
use legibility::domain::UserRole;

async fn login_roles_and_study_pages(backend: Backend) {
    let app = TestApp::start(backend).await;
    let fixture = app.fixture(3, 1, 2, 45_000).await;

    // Anonymous visitors are sent to the login page; a wrong password is refused.
    let mut anonymous = app.client();
    assert_eq!(anonymous.get("/studies").await.location(), Some("/login"));
    let hash = legibility::auth::hash_password("researcher password").unwrap();
    app.store()
        .create_user("rita", &hash, UserRole::Researcher, app.now())
        .await
        .unwrap();
    let refused = anonymous
        .post_form(
            "/login",
            &[("username", "rita"), ("password", "wrong password!")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(refused.body.contains("Unknown username or wrong password"));
    assert!(anonymous.cookies.is_empty());

    // A researcher sees studies and may create one, but may not import or invite.
    let mut researcher = app.client();
    let ok = researcher
        .post_form(
            "/login",
            &[("username", "rita"), ("password", "researcher password")],
        )
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    let list = researcher.get("/studies").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.body.contains(&fixture.problem_set));
    assert_eq!(
        researcher.get("/admin/import").await.status,
        StatusCode::FORBIDDEN
    );
    let study_page = format!("/studies/{}", fixture.study_id);
    assert_eq!(
        researcher
            .post_form(&format!("{study_page}/invites"), &[("names", "x")])
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let set_id = app.store().problem_sets().await.unwrap()[0].id.to_string();
    let created = researcher
        .post_form(
            "/studies",
            &[
                ("name", "helpful only"),
                ("problem_set_id", &set_id),
                ("role", "helpful"),
                ("time_limit_s", "30"),
                ("judgements_per_solution", "2"),
                ("max_problems", "2"),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    let new_page = researcher.get(created.location().unwrap()).await;
    assert!(
        new_page.body.contains("0 of 4 judgements (2 solutions)"),
        "{}",
        new_page.body
    );
    assert!(
        new_page.body.contains("time limit 30 s"),
        "{}",
        new_page.body
    );
    let duplicate = researcher
        .post_form(
            "/studies",
            &[
                ("name", "helpful only"),
                ("problem_set_id", &set_id),
                ("time_limit_s", "30"),
                ("judgements_per_solution", "2"),
            ],
        )
        .await;
    assert_eq!(duplicate.status, StatusCode::CONFLICT);
    let bad_limit = researcher
        .post_form(
            "/studies",
            &[
                ("name", "x"),
                ("problem_set_id", &set_id),
                ("time_limit_s", "0"),
                ("judgements_per_solution", "2"),
            ],
        )
        .await;
    assert_eq!(bad_limit.status, StatusCode::BAD_REQUEST);
    assert!(bad_limit.body.contains("time limit"));

    // An admin invites raters; the links work once the page shows them.
    let mut admin = app.staff_client("ada", UserRole::Admin).await;
    let invites = admin
        .post_form(
            &format!("{study_page}/invites"),
            &[("names", "Ann\nBo\n\n")],
        )
        .await;
    assert_eq!(invites.status, StatusCode::OK, "{}", invites.body);
    let links: Vec<&str> = invites
        .body
        .split("<code>")
        .skip(1)
        .map(|s| s.split("</code>").next().unwrap())
        .collect();
    assert_eq!(links.len(), 2);
    assert!(links[0].starts_with("http://lab.test/r/"), "{}", links[0]);
    let path = links[0].trim_start_matches("http://lab.test");
    let mut rater = app.client();
    assert_eq!(rater.get(path).await.location(), Some("/rate"));
    let instructions = rater.get("/rate").await;
    assert!(instructions.body.contains("Welcome, Ann"));
    assert!(instructions.body.contains("45 seconds"));
    let progress_page = admin.get(&study_page).await;
    assert!(progress_page.body.contains("Raters (2)"));

    // Logging out ends the session server-side.
    let cookie = researcher.cookies.clone();
    researcher.post_form("/logout", &[]).await;
    let mut replayed = app.client();
    replayed.cookies = cookie;
    assert_eq!(replayed.get("/studies").await.location(), Some("/login"));
}
on_both_backends!(login_roles_and_study_pages);

async fn cross_site_posts_are_refused(backend: Backend) {
    let app = TestApp::start(backend).await;
    let mut admin = app.staff_client("ada", UserRole::Admin).await;
    let request = Request::builder()
        .method(Method::POST)
        .uri("/logout")
        .header(header::ORIGIN, "https://evil.example")
        .body(Body::empty())
        .unwrap();
    assert_eq!(admin.send(request).await.status, StatusCode::FORBIDDEN);
    let same_site = Request::builder()
        .method(Method::POST)
        .uri("/logout")
        .header(header::ORIGIN, "http://lab.test")
        .body(Body::empty())
        .unwrap();
    assert_eq!(admin.send(same_site).await.status, StatusCode::SEE_OTHER);

    // Without Origin: Sec-Fetch-Site or a foreign Referer still mark a cross-site post, on a
    // rater's form as on staff forms; a same-site Referer passes.
    let fixture = app.fixture(2, 1, 1, 45_000).await;
    let tokens = app.invite(fixture.study_id, 1).await;
    let mut rater = app.rater_client(&tokens[0]).await;
    let item = rater.get("/api/rater/item").await.json();
    let id = item["assignment_id"].as_str().unwrap().to_string();
    let post = |header: (&str, &str)| {
        Request::builder()
            .method(Method::POST)
            .uri("/rate/item")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header.0, header.1)
            .body(Body::from(format!("assignment_id={id}&verdict=correct")))
            .unwrap()
    };
    for foreign in [
        ("sec-fetch-site", "cross-site"),
        ("referer", "https://evil.example/page"),
        ("referer", "http://lab.test.evil.example/"),
    ] {
        let refused = rater.send(post(foreign)).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{foreign:?}");
    }
    assert_eq!(
        app.store()
            .study_progress(fixture.study_id)
            .await
            .unwrap()
            .judged,
        0,
        "a refused post stored a judgement"
    );
    let accepted = rater
        .send(post(("referer", "http://lab.test/rate/item")))
        .await;
    assert_eq!(accepted.status, StatusCode::SEE_OTHER, "{}", accepted.body);
    let accepted = rater.send(post(("sec-fetch-site", "same-origin"))).await;
    assert_ne!(accepted.status, StatusCode::FORBIDDEN);
}
on_both_backends!(cross_site_posts_are_refused);

async fn health_reports_the_backend(backend: Backend) {
    let app = TestApp::start(backend).await;
    let health = app.client().get("/healthz").await;
    assert_eq!(health.status, StatusCode::OK);
    let expected = if backend == Backend::Sqlite {
        "sqlite"
    } else {
        "postgres"
    };
    assert_eq!(health.json()["database"], expected);
}
on_both_backends!(health_reports_the_backend);

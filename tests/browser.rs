//! A real headless Chromium, driven over WebDriver (ChromeDriver), judges items with the
//! keyboard, watches the countdown fall, and lets one item time out; the database must then
//! hold exactly a `correct`, a `wrong` and a `timeout` for that rater. Further tests run
//! axe-core on every rater page in both languages, and walk the rater protocol: practice,
//! screening, silent gold items, resuming in a new tab and the step flag.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Backend, TestApp};
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::{Client, ClientBuilder, Locator};
use legibility::domain::UserRole;
use legibility::quality::RaterProtocol;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// ChromeDriver as a child process, killed when the test ends (even on panic).
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_browser() -> (Driver, Client) {
    assert!(
        std::path::Path::new(CHROMEDRIVER).exists() && std::path::Path::new(CHROMIUM).exists(),
        "headless Chromium is needed: apt-get install chromium chromium-driver (.ci/run does this)"
    );
    let port = common::free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver(child);
    let profile = tempfile::tempdir().unwrap();
    let capabilities = serde_json::json!({
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-quic", "--window-size=1000,900",
                     format!("--user-data-dir={}", profile.keep().display())]
        }
    });
    let capabilities = capabilities.as_object().unwrap().clone();
    let started = Instant::now();
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector)
            .capabilities(capabilities.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(client) => return (driver, client),
            Err(e) if started.elapsed() < Duration::from_secs(30) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("could not start a Chromium session: {e}"),
        }
    }
}

/// Serves the app's router on a free loopback port; returns its base URL.
async fn serve(app: &TestApp) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let router = app.router.clone();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{address}")
}

async fn press(browser: &Client, key: char) {
    let keys = KeyActions::new("keyboard".into())
        .then(KeyAction::Down { value: key })
        .then(KeyAction::Up { value: key });
    browser.perform_actions(keys).await.unwrap();
}

async fn text_of(browser: &Client, css: &str) -> String {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Waits until the page's title is `expected`; on time-out, panics with the page.
async fn wait_for_title(browser: &Client, expected: &str, within: Duration) {
    let started = Instant::now();
    loop {
        let title = browser.title().await.unwrap_or_default();
        if title == expected {
            return;
        }
        if started.elapsed() > within {
            let url = browser
                .current_url()
                .await
                .map(|u| u.to_string())
                .unwrap_or_default();
            let source = browser.source().await.unwrap_or_default();
            panic!("page never reached {expected:?}; title is {title:?} at {url}:\n{source}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the page's source contains `text` (a page whose title does not change).
async fn wait_for_source(browser: &Client, text: &str, within: Duration) {
    let started = Instant::now();
    loop {
        let source = browser.source().await.unwrap_or_default();
        if source.contains(text) {
            return;
        }
        if started.elapsed() > within {
            panic!("the page never showed {text:?}:\n{source}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the (English) page shows the given item number, or the end page for `None`.
async fn wait_for_item(browser: &Client, item: Option<u32>, within: Duration) {
    let title = item.map_or_else(|| "All done".to_string(), |n| format!("Item {n}"));
    wait_for_title(browser, &title, within).await;
}

/// Clicks the element with this id.
async fn click(browser: &Client, id: &str) {
    browser
        .find(Locator::Id(id))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Presses Tab (at most `presses` times) until the element with this id has the focus.
async fn tab_to(browser: &Client, id: &str, presses: usize) {
    let mut focused = String::new();
    for _ in 0..presses {
        press(browser, '\u{E004}').await; // Tab
        focused = browser
            .execute("return document.activeElement.id;", vec![])
            .await
            .unwrap()
            .as_str()
            .unwrap_or_default()
            .to_string();
        if focused == id {
            return;
        }
    }
    panic!("Tab never reached #{id}; the focus is on #{focused}");
}

/// The countdown's number, whatever its unit ("12 s", "12 秒").
fn seconds(countdown: &str) -> i64 {
    countdown
        .trim_end_matches(|c: char| !c.is_ascii_digit())
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("countdown text {countdown:?}"))
}

async fn rater_judges_with_the_keyboard_in_chromium(backend: Backend) {
    let app = TestApp::start(backend).await;
    // Three problems, one checkpoint: the rater gets exactly three items, 4 s each.
    let fixture = app.fixture(3, 1, 1, 4_000).await;
    let tokens = app.invite(fixture.study_id, 1).await;
    let base = serve(&app).await;

    let (_driver, browser) = start_browser().await;
    browser
        .goto(&format!("{base}/r/{}", tokens[0]))
        .await
        .unwrap();
    assert_eq!(browser.title().await.unwrap(), "Instructions");
    click(&browser, "start").await;
    wait_for_item(&browser, Some(1), Duration::from_secs(10)).await;

    // The countdown falls.
    let before = seconds(&text_of(&browser, "#countdown").await);
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    let after = seconds(&text_of(&browser, "#countdown").await);
    assert!(
        before >= 3 && after < before,
        "countdown did not fall: {before} then {after}"
    );

    // Reloading keeps the deadline (same item, no fresh 4 s).
    browser.refresh().await.unwrap();
    wait_for_item(&browser, Some(1), Duration::from_secs(5)).await;
    assert!(
        seconds(&text_of(&browser, "#countdown").await) <= after,
        "a reload restarted the countdown"
    );
    // Judge by keyboard: C, then W on the next item.
    press(&browser, 'c').await;
    wait_for_item(&browser, Some(2), Duration::from_secs(10)).await;
    press(&browser, 'w').await;
    // "Wrong" opens the step flag page under the same countdown; left alone, it moves on by
    // itself when the item's time is up.
    wait_for_title(
        &browser,
        "Which step is the first wrong one?",
        Duration::from_secs(5),
    )
    .await;
    wait_for_item(&browser, Some(3), Duration::from_secs(10)).await;
    // Let the third item run out: the page posts a timeout by itself, then the end page.
    wait_for_item(&browser, None, Duration::from_secs(15)).await;
    browser.close().await.unwrap();

    let progress = app.store().study_progress(fixture.study_id).await.unwrap();
    assert_eq!(
        (
            progress.correct_verdicts,
            progress.wrong_verdicts,
            progress.timeouts,
            progress.in_progress
        ),
        (1, 1, 1, 0),
        "{progress:?}"
    );
}
on_both_backends!(rater_judges_with_the_keyboard_in_chromium);

/// axe-core's browser build: `LEGIBILITY_TEST_AXE`, or where `.ci/run` installs it from npm.
fn axe_source() -> String {
    let path = std::env::var("LEGIBILITY_TEST_AXE").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/target/ci-node/node_modules/axe-core/axe.min.js"
        )
        .into()
    });
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "axe-core is needed at {path} ({e}): npm install --prefix target/ci-node axe-core@4 \
             (.ci/run does this)"
        )
    })
}

/// Runs axe-core on the current page and fails on any serious or critical violation.
async fn assert_accessible(browser: &Client, axe: &str, page: &str) {
    browser.execute(axe, vec![]).await.unwrap();
    let result = browser
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, {resultTypes: ['violations']})
                .then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                                         nodes: v.nodes.map(n => n.html)}))))
                .catch(e => done([{id: 'axe-error', impact: 'critical', help: String(e), nodes: []}]));",
            vec![],
        )
        .await
        .unwrap();
    let violations = result.as_array().cloned().unwrap_or_default();
    let serious: Vec<&serde_json::Value> = violations
        .iter()
        .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
        .collect();
    assert!(
        serious.is_empty(),
        "{page}: axe-core found serious violations: {serious:#?}"
    );
}

/// The rater pages in English and Simplified Chinese pass axe-core with no serious or critical
/// violation; the item can be judged with Tab and Enter alone; the language switch keeps the
/// item and its deadline.
async fn rater_pages_are_accessible_in_both_languages(backend: Backend) {
    let app = TestApp::start(backend).await;
    let fixture = app.fixture(3, 1, 1, 45_000).await;
    let tokens = app.invite(fixture.study_id, 1).await;
    let base = serve(&app).await;
    let axe = axe_source();

    let (_driver, browser) = start_browser().await;
    browser
        .goto(&format!("{base}/r/{}", tokens[0]))
        .await
        .unwrap();
    assert_eq!(browser.title().await.unwrap(), "Instructions");
    assert_accessible(&browser, &axe, "instructions (en)").await;
    browser.goto(&format!("{base}/rate/item")).await.unwrap();
    wait_for_item(&browser, Some(1), Duration::from_secs(10)).await;
    assert_accessible(&browser, &axe, "item (en)").await;

    // Keyboard only: Tab to "Wrong" and press Enter.
    tab_to(&browser, "btn-wrong", 6).await;
    press(&browser, '\u{E007}').await; // Enter
    // The step flag page follows "wrong"; it passes axe too, and skipping works by keyboard.
    wait_for_title(
        &browser,
        "Which step is the first wrong one?",
        Duration::from_secs(10),
    )
    .await;
    assert_accessible(&browser, &axe, "step flag (en)").await;
    tab_to(&browser, "step-skip", 12).await;
    press(&browser, '\u{E007}').await; // Enter
    wait_for_item(&browser, Some(2), Duration::from_secs(10)).await;

    // Switch to Chinese mid-item: the same item comes back with its deadline, in Chinese.
    let before = seconds(&text_of(&browser, "#countdown").await);
    click(&browser, "lang-switch").await;
    wait_for_title(&browser, "第 2 题", Duration::from_secs(10)).await;
    let lang = browser
        .execute("return document.documentElement.lang;", vec![])
        .await
        .unwrap();
    assert_eq!(lang, "zh-Hans");
    let left = seconds(&text_of(&browser, "#countdown").await);
    assert!(left <= before, "the switch restarted the countdown");
    assert!(text_of(&browser, "#btn-correct").await.starts_with("正确"));
    assert_accessible(&browser, &axe, "item (zh-Hans)").await;

    // Finish in Chinese and check the last page too.
    press(&browser, 'c').await;
    wait_for_title(&browser, "第 3 题", Duration::from_secs(10)).await;
    press(&browser, 'c').await;
    wait_for_title(&browser, "全部完成", Duration::from_secs(10)).await;
    assert_accessible(&browser, &axe, "all done (zh-Hans)").await;
    browser.close().await.unwrap();

    let progress = app.store().study_progress(fixture.study_id).await.unwrap();
    assert_eq!(
        (
            progress.correct_verdicts,
            progress.wrong_verdicts,
            progress.timeouts
        ),
        (2, 1, 0),
        "{progress:?}"
    );
}
on_both_backends!(rater_pages_are_accessible_in_both_languages);

/// The fixture's problem index of the page's question (see [`common::problem_index_of`]).
async fn problem_on_page(browser: &Client) -> usize {
    common::problem_index_of(&text_of(browser, "#question").await)
}

/// Every element id on the page, in document order: the page's structure without its text.
async fn element_ids(browser: &Client) -> String {
    browser
        .execute(
            "return Array.from(document.querySelectorAll('[id]')).map(e => e.tagName + '#' + e.id).join(' ');",
            vec![],
        )
        .await
        .unwrap()
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Answers the item on screen as a careful rater would (sneaky solutions say "carefully"), by
/// keyboard; after "wrong" the step page comes, where step 2 is clicked (or skip when `skip`).
async fn answer_truthfully(browser: &Client, axe: Option<&str>, skip: bool) -> bool {
    let wrong = text_of(browser, "#solution").await.contains("carefully");
    if wrong {
        press(browser, 'w').await;
        wait_for_title(
            browser,
            "Which step is the first wrong one?",
            Duration::from_secs(10),
        )
        .await;
        if let Some(axe) = axe {
            assert_accessible(browser, axe, "step flag (en)").await;
        }
        click(browser, if skip { "step-skip" } else { "step-2" }).await;
    } else {
        press(browser, 'c').await;
    }
    wrong
}

/// A rater practises (and sees the right answer), qualifies, judges study and silent gold items
/// that look alike, flags the first wrong step after "wrong", closes the tab mid-item and
/// resumes it in a new one with the same deadline; a second rater fails screening and is shown
/// no study item. Every new page passes axe-core.
async fn rater_protocol_in_chromium(backend: Backend) {
    let app = TestApp::start(backend).await;
    let study_problems = 3;
    let protocol = RaterProtocol {
        practice_items: 1,
        screening_items: 2,
        screening_pass_accuracy: 1.0,
        gold_items: 2,
        gold_rate: 0.9,
        ..RaterProtocol::default()
    };
    let fixture = app
        .fixture_with_protocol(12, study_problems, protocol)
        .await;
    let tokens = app.invite(fixture.study_id, 2).await;
    let base = serve(&app).await;
    let axe = axe_source();
    let (_driver, browser) = start_browser().await;

    browser
        .goto(&format!("{base}/r/{}", tokens[0]))
        .await
        .unwrap();
    click(&browser, "start").await;
    // Practice, with the right answer afterwards.
    wait_for_title(&browser, "Practice item 1 of 1", Duration::from_secs(10)).await;
    assert!(
        text_of(&browser, "#practice-note")
            .await
            .contains("right answer")
    );
    assert!(problem_on_page(&browser).await >= study_problems);
    let wrong = text_of(&browser, "#solution").await.contains("carefully");
    press(&browser, if wrong { 'w' } else { 'c' }).await;
    wait_for_title(
        &browser,
        "Practice: the right answer",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        text_of(&browser, "#feedback-verdict").await,
        "Your answer was right."
    );
    let expected = if wrong {
        "This solution is wrong."
    } else {
        "This solution is correct."
    };
    assert_eq!(text_of(&browser, "#feedback-solution").await, expected);
    assert_accessible(&browser, &axe, "practice feedback (en)").await;
    click(&browser, "continue").await;

    // Screening: two items, answered right (a "wrong" leads to the step page; skipped here).
    for number in 1..=2 {
        wait_for_title(
            &browser,
            &format!("Qualification item {number} of 2"),
            Duration::from_secs(10),
        )
        .await;
        if number == 1 {
            assert_accessible(&browser, &axe, "screening item (en)").await;
        }
        answer_truthfully(&browser, None, true).await;
    }

    // The session: study and gold items, numbered alike and built alike.
    let mut structures = std::collections::BTreeSet::new();
    let (mut gold, mut flagged, mut resumed) = (0, 0, false);
    for number in 1.. {
        let title = format!("Item {number}");
        let started = Instant::now();
        loop {
            let now = browser.title().await.unwrap_or_default();
            if now == title || now == "All done" || started.elapsed() > Duration::from_secs(10) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if browser.title().await.unwrap() == "All done" {
            break;
        }
        wait_for_title(&browser, &title, Duration::from_secs(1)).await;
        structures.insert(element_ids(&browser).await);
        gold += usize::from(problem_on_page(&browser).await >= study_problems);
        if !resumed {
            // Close the tab mid-item and come back in a new one: same item, same deadline.
            resumed = true;
            let item = text_of(&browser, "#question").await;
            let before = seconds(&text_of(&browser, "#countdown").await);
            let old = browser.window().await.unwrap();
            let tab = browser.new_window(true).await.unwrap();
            browser.close_window().await.unwrap();
            drop(old);
            browser.switch_to_window(tab.handle).await.unwrap();
            tokio::time::sleep(Duration::from_millis(1_500)).await;
            browser.goto(&format!("{base}/rate/item")).await.unwrap();
            wait_for_title(&browser, &title, Duration::from_secs(10)).await;
            assert_eq!(
                text_of(&browser, "#question").await,
                item,
                "another item after resuming"
            );
            let left = seconds(&text_of(&browser, "#countdown").await);
            assert!(
                left < before && left > before - 10,
                "resumed with {left} s after {before} s: not the same deadline"
            );
        }
        if answer_truthfully(&browser, (flagged == 0).then_some(axe.as_str()), false).await {
            flagged += 1;
        }
    }
    assert!(gold > 0, "no gold item was served at a 90 % rate");
    assert_eq!(
        structures.len(),
        1,
        "gold and study pages differ: {structures:#?}"
    );

    // The second rater calls everything correct: 1 of 2 on screening, below the 100 % mark.
    browser.delete_all_cookies().await.unwrap();
    browser
        .goto(&format!("{base}/r/{}", tokens[1]))
        .await
        .unwrap();
    click(&browser, "start").await;
    wait_for_title(&browser, "Practice item 1 of 1", Duration::from_secs(10)).await;
    press(&browser, 'c').await;
    wait_for_title(
        &browser,
        "Practice: the right answer",
        Duration::from_secs(10),
    )
    .await;
    click(&browser, "continue").await;
    for number in 1..=2 {
        wait_for_title(
            &browser,
            &format!("Qualification item {number} of 2"),
            Duration::from_secs(10),
        )
        .await;
        press(&browser, 'c').await;
    }
    wait_for_title(&browser, "Thank you", Duration::from_secs(10)).await;
    assert_accessible(&browser, &axe, "not admitted (en)").await;
    browser.goto(&format!("{base}/rate/item")).await.unwrap();
    wait_for_title(&browser, "Thank you", Duration::from_secs(10)).await;
    browser.close().await.unwrap();

    // Only the admitted rater's study items count; the step flags were stored.
    let raters = app.store().rater_progress(fixture.study_id).await.unwrap();
    let judged: Vec<i64> = raters.iter().map(|r| r.judgements).collect();
    assert_eq!(judged, vec![study_problems as i64, 0]);
    let summary = legibility::reports::study_report(
        &app.store().report_attempts(fixture.study_id).await.unwrap(),
        false,
    );
    let study_flags: u64 = summary.step_flags.iter().map(|f| f.flagged).sum();
    let study_wrong: u64 = summary.step_flags.iter().map(|f| f.wrong_verdicts).sum();
    assert_eq!(
        study_flags, study_wrong,
        "every study \"wrong\" got its step flag"
    );
    assert!(flagged as u64 >= study_flags);
    let quality = app
        .store()
        .study_rater_quality(fixture.study_id)
        .await
        .unwrap();
    assert_eq!(quality[&raters[0].rater.id].gold.answered, gold as i64);
    assert_eq!(quality[&raters[1].rater.id].screening_passed, Some(false));
}
on_both_backends!(rater_protocol_in_chromium);

/// Stops the page's countdown, as a rater tampering with the page could (every timer the page
/// set is cleared), so that it neither ticks nor sends its timeout at zero.
async fn stop_the_page_clock(browser: &Client) {
    browser
        .execute(
            "var id = window.setTimeout(function () {}, 0); while (id--) window.clearTimeout(id);",
            vec![],
        )
        .await
        .unwrap();
}

/// The timing outcomes of real pages in Chromium, each with what was stored: the page's own
/// timeout, a late verdict from a tampered page (within the grace), a verdict after the grace
/// (410, nothing stored), and an item resumed by opening the link again in a new tab.
async fn timing_outcomes_in_chromium(backend: Backend) {
    let app = TestApp::start(backend).await;
    // Five problems, one checkpoint, 5 s per item; the fixture's grace is 5 s.
    let fixture = app.fixture(5, 1, 1, 5_000).await;
    let tokens = app.invite(fixture.study_id, 1).await;
    let base = serve(&app).await;
    let (_driver, browser) = start_browser().await;
    let link = format!("{base}/r/{}", tokens[0]);
    browser.goto(&link).await.unwrap();
    click(&browser, "start").await;

    // 1. The countdown reaches zero: the page sends its timeout itself.
    wait_for_item(&browser, Some(1), Duration::from_secs(10)).await;
    wait_for_item(&browser, Some(2), Duration::from_secs(15)).await;

    // 2. A tampered page: its clock stopped, "Correct" clicked just after the deadline.
    stop_the_page_clock(&browser).await;
    tokio::time::sleep(Duration::from_millis(5_800)).await;
    click(&browser, "btn-correct").await;
    wait_for_item(&browser, Some(3), Duration::from_secs(10)).await;

    // 3. The same, but the answer comes after deadline + grace: refused, nothing stored.
    stop_the_page_clock(&browser).await;
    app.state.clock.advance_ms(5_000 + 5_000 + 1_000);
    let judged_before = app.store().study_progress(fixture.study_id).await.unwrap();
    click(&browser, "btn-correct").await;
    wait_for_title(&browser, "Time ran out", Duration::from_secs(10)).await;
    assert!(
        text_of(&browser, "main").await.contains("was not recorded"),
        "the 410 page does not say the answer was not stored"
    );
    let judged_after = app.store().study_progress(fixture.study_id).await.unwrap();
    assert_eq!(
        (judged_after.judged, judged_after.in_progress),
        (judged_before.judged, 0),
        "an answer after the grace was stored, or its slot was kept"
    );
    click(&browser, "continue").await;

    // 4. Reopening the link in a new tab mid-item goes straight back to the item, with less
    //    time, and the answer counts as given in time by a resumed item.
    wait_for_item(&browser, Some(3), Duration::from_secs(10)).await;
    let question = text_of(&browser, "#question").await;
    let before = seconds(&text_of(&browser, "#countdown").await);
    let old = browser.window().await.unwrap();
    let tab = browser.new_window(true).await.unwrap();
    browser.close_window().await.unwrap();
    drop(old);
    browser.switch_to_window(tab.handle).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    browser.goto(&link).await.unwrap();
    wait_for_item(&browser, Some(3), Duration::from_secs(10)).await;
    assert_eq!(text_of(&browser, "#question").await, question);
    let left = seconds(&text_of(&browser, "#countdown").await);
    assert!(
        left < before,
        "resumed with {left} s after {before} s: the clock was reset"
    );
    press(&browser, 'c').await;
    wait_for_item(&browser, Some(4), Duration::from_secs(10)).await;
    browser.close().await.unwrap();

    let rows = app.attempts(fixture.study_id).await;
    let stored: Vec<(&str, &str, i64, bool)> = rows
        .iter()
        .map(|r| {
            (
                r["verdict"].as_str().unwrap(),
                r["timing"].as_str().unwrap(),
                r["times_shown"].as_i64().unwrap(),
                r["attempt_flags"]
                    .as_str()
                    .unwrap()
                    .contains("implausible_client_time"),
            )
        })
        .collect();
    assert_eq!(
        stored,
        vec![
            ("timeout", "page_timeout", 1, false),
            ("timeout", "late_answer", 1, false),
            ("correct", "in_time", 2, false),
        ],
        "{rows:#?}"
    );
    assert!(
        rows[2]["attempt_flags"]
            .as_str()
            .unwrap()
            .contains("resumed")
    );
}
on_both_backends!(timing_outcomes_in_chromium);

/// Staff access in a real browser: log in through the form, create an API token on the account
/// page (shown once), revoke it, and end the session from the admins' list, which logs the
/// browser out. The account page and the session list pass axe-core.
async fn staff_account_page_in_chromium(backend: Backend) {
    let app = TestApp::start(backend).await;
    let hash = legibility::auth::hash_password("ada's long password").unwrap();
    app.store()
        .create_user("ada", &hash, legibility::domain::UserRole::Admin, app.now())
        .await
        .unwrap();
    let base = serve(&app).await;
    let axe = axe_source();
    let (_driver, browser) = start_browser().await;
    let fill = async |css: &str, text: &str| {
        browser
            .find(Locator::Css(css))
            .await
            .unwrap()
            .send_keys(text)
            .await
            .unwrap();
    };
    let submit = async |css: &str| {
        browser
            .find(Locator::Css(css))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    };
    browser.goto(&format!("{base}/login")).await.unwrap();
    fill("input[name=username]", "ada").await;
    fill("input[name=password]", "ada's long password").await;
    submit("form[action='/login'] button").await;
    wait_for_title(
        &browser,
        "Studies · Legibility Lab",
        Duration::from_secs(10),
    )
    .await;
    browser
        .find(Locator::LinkText("Account"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_title(
        &browser,
        "Your account · Legibility Lab",
        Duration::from_secs(10),
    )
    .await;
    assert_accessible(&browser, &axe, "account").await;

    fill("input[name=name]", "notebook").await;
    submit("form[action='/account/tokens'] button").await;
    wait_for_source(&browser, "id=\"token-value\"", Duration::from_secs(10)).await;
    let token = text_of(&browser, "#token-value").await;
    assert!(token.starts_with("llpat_"), "{token}");
    assert_accessible(&browser, &axe, "account with a new token").await;
    browser.goto(&format!("{base}/account")).await.unwrap();
    let page = browser.source().await.unwrap();
    assert!(page.contains("notebook") && !page.contains(&token));
    submit("#tokens form button").await;
    // The page after revoking has the same title: wait for what it says instead.
    wait_for_source(&browser, "No tokens yet", Duration::from_secs(10)).await;

    browser
        .goto(&format!("{base}/admin/sessions"))
        .await
        .unwrap();
    assert!(browser.source().await.unwrap().contains("(this session)"));
    assert_accessible(&browser, &axe, "staff sessions").await;
    submit("#all-sessions form button").await;
    wait_for_title(&browser, "Log in · Legibility Lab", Duration::from_secs(10)).await;
    browser.goto(&format!("{base}/studies")).await.unwrap();
    wait_for_title(&browser, "Log in · Legibility Lab", Duration::from_secs(10)).await;
    browser.close().await.unwrap();
}
on_both_backends!(staff_account_page_in_chromium);

/// Logs a staff account into the browser through the login form.
async fn staff_login(browser: &Client, base: &str, app: &TestApp, username: &str) {
    let password = "a long enough password";
    let hash = legibility::auth::hash_password(password).unwrap();
    app.store()
        .create_user(
            username,
            &hash,
            legibility::domain::UserRole::Admin,
            app.now(),
        )
        .await
        .unwrap();
    browser.goto(&format!("{base}/login")).await.unwrap();
    let field = |name: &'static str| browser.find(Locator::Css(name));
    field("input[name=username]")
        .await
        .unwrap()
        .send_keys(username)
        .await
        .unwrap();
    field("input[name=password]")
        .await
        .unwrap()
        .send_keys(password)
        .await
        .unwrap();
    field("form.stack button[type=submit]")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_title(browser, "Studies · Legibility Lab", Duration::from_secs(10)).await;
}

/// A number the page's script computes.
async fn js_number(browser: &Client, script: &str) -> i64 {
    browser
        .execute(script, vec![])
        .await
        .unwrap()
        .as_i64()
        .unwrap_or_else(|| panic!("{script} gave no number"))
}

/// Staff pages with data (a study with raters, judgements, verifier scores, a job) fit a
/// 390 px phone and a 1280 px laptop: the page never scrolls sideways; wide tables scroll
/// inside their box, which then takes the keyboard focus; axe-core finds no serious
/// violation on the phone. Times are turned into local time,
/// and Revoke asks first (dismissing keeps the link). With `LEGIBILITY_TEST_SCREENSHOTS=DIR`
/// full-page PNGs of the study and report pages at both widths are written there.
async fn staff_pages_fit_a_phone_and_a_laptop(backend: Backend) {
    let app = TestApp::start(backend).await;
    let fixture = app.fixture(12, 2, 2, 45_000).await;
    let study = fixture.study_id;
    let tokens = app.invite(study, 4).await;
    app.judge_all(&tokens[..2], common::truthful).await;
    app.judge_all(&tokens[2..3], |_| "correct").await;
    app.store_verifier_scores(study, |i, _| (i % 5) as f64 - 2.0)
        .await;
    app.store()
        .enqueue_verifier_scoring(study, None, None, app.now())
        .await
        .unwrap();
    let base = serve(&app).await;
    let (_driver, browser) = start_browser().await;
    staff_login(&browser, &base, &app, "ada").await;
    let screenshots = std::env::var_os("LEGIBILITY_TEST_SCREENSHOTS").map(std::path::PathBuf::from);
    let axe = axe_source();

    let pages = [
        ("study", format!("/studies/{study}")),
        ("report", format!("/studies/{study}/report")),
        ("studies", "/studies".to_string()),
        ("jobs", "/admin/jobs".to_string()),
        ("verifiers", "/admin/verifiers".to_string()),
        ("checkpoints", "/admin/checkpoints".to_string()),
        ("runs", "/admin/runs".to_string()),
        ("edit", format!("/studies/{study}/edit")),
        ("duplicate", format!("/studies/new?from={study}")),
    ];
    for (width, height) in [(390u32, 844u32), (1280, 800)] {
        browser.set_window_size(width, height).await.unwrap();
        let inner = js_number(&browser, "return window.innerWidth;").await;
        assert!(
            (inner - i64::from(width)).abs() <= 20,
            "the viewport is {inner} px wide, not about {width}"
        );
        for (name, path) in &pages {
            browser.goto(&format!("{base}{path}")).await.unwrap();
            let title = browser.title().await.unwrap();
            assert!(title.ends_with("Legibility Lab"), "{name}: {title}");
            let page = js_number(&browser, "return document.documentElement.scrollWidth;").await;
            let inner = js_number(&browser, "return window.innerWidth;").await;
            assert!(
                page <= inner,
                "{name} at {width} px is {page} px wide: the page scrolls sideways"
            );
            // Any box that scrolls sideways can take the focus (staff.js marks it).
            let unfocusable = js_number(
                &browser,
                "return Array.from(document.querySelectorAll('.table-scroll'))
                    .filter(b => b.scrollWidth > b.clientWidth + 1 && b.tabIndex !== 0).length;",
            )
            .await;
            assert_eq!(unfocusable, 0, "{name} at {width} px");
            if width == 390 {
                assert_accessible(&browser, &axe, &format!("{name} at 390 px")).await;
            }
            if let (Some(dir), "study" | "report") = (&screenshots, *name) {
                // One PNG per screenful, top to bottom: NAME-WIDTH-1.png, -2, …
                std::fs::create_dir_all(dir).unwrap();
                let full =
                    js_number(&browser, "return document.documentElement.scrollHeight;").await;
                let screen = js_number(&browser, "return window.innerHeight;").await;
                for (i, top) in (0..full).step_by(screen.max(1) as usize).enumerate() {
                    browser
                        .execute(&format!("window.scrollTo(0, {top});"), vec![])
                        .await
                        .unwrap();
                    let png = browser.screenshot().await.unwrap();
                    let file = dir.join(format!("{name}-{width}-{}.png", i + 1));
                    std::fs::write(file, png).unwrap();
                }
            }
        }
        // On the phone the report's wide tables do scroll inside their boxes.
        if width == 390 {
            browser
                .goto(&format!("{base}/studies/{study}/report"))
                .await
                .unwrap();
            let scrolling = js_number(
                &browser,
                "return Array.from(document.querySelectorAll('.table-scroll'))
                    .filter(b => b.scrollWidth > b.clientWidth + 1).length;",
            )
            .await;
            assert!(
                scrolling >= 2,
                "only {scrolling} table boxes scroll at 390 px"
            );
        }
    }

    // Times: local time from the <time> element, the server's UTC text kept as the tooltip.
    browser.goto(&format!("{base}/admin/jobs")).await.unwrap();
    let time = browser.find(Locator::Css("time[datetime]")).await.unwrap();
    assert!(
        time.attr("data-local").await.unwrap().is_some(),
        "not localised"
    );
    let tooltip = time.attr("title").await.unwrap().unwrap_or_default();
    assert!(tooltip.ends_with(" UTC"), "{tooltip}");

    // Revoke asks first; dismissing leaves the link working, accepting revokes it.
    browser
        .goto(&format!("{base}/studies/{study}"))
        .await
        .unwrap();
    let revoke = "tr[data-rater] form[action$='/revoke'] button";
    browser
        .find(Locator::Css(revoke))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let question = browser.get_alert_text().await.unwrap();
    assert!(question.starts_with("Revoke rater "), "{question}");
    browser.dismiss_alert().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let revoked = |app: &TestApp| {
        let store = app.store().clone();
        async move {
            store
                .rater_progress(study)
                .await
                .unwrap()
                .iter()
                .filter(|r| r.revoked_at.is_some())
                .count()
        }
    };
    assert_eq!(revoked(&app).await, 0, "dismissing revoked the link");
    browser
        .find(Locator::Css(revoke))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser.accept_alert().await.unwrap();
    let started = Instant::now();
    while revoked(&app).await == 0 {
        assert!(started.elapsed() < Duration::from_secs(10), "never revoked");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser.close().await.unwrap();
}
on_both_backends!(staff_pages_fit_a_phone_and_a_laptop);

/// What one participant of the panel study does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Consents, answers, passes the check, judges everything left, takes the code back.
    Complete,
    /// Fails the comprehension check twice.
    FailComprehension,
    /// Judges one item, is served a second, and leaves.
    Abandon,
}

/// Clicks the radio button of `option` in comprehension question `question`.
async fn choose(browser: &Client, question: usize, option: usize) {
    browser
        .find(Locator::Css(&format!(
            "input[name='q{question}'][value='{option}']"
        )))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// One participant in a fresh browser session from `entry` to their end; returns the study
/// items they judged and the end page's completion code.
async fn take_part(browser: &Client, entry: &str, plan: Plan, axe: Option<&str>) -> (u32, String) {
    browser.delete_all_cookies().await.unwrap();
    browser.goto(entry).await.unwrap();
    wait_for_title(browser, "Information and consent", Duration::from_secs(10)).await;
    assert!(
        text_of(browser, "#consent-text h1")
            .await
            .contains("Taking part")
    );
    if let Some(axe) = axe {
        assert_accessible(browser, axe, "consent").await;
    }
    click(browser, "consent-accept").await;
    wait_for_title(browser, "About you", Duration::from_secs(10)).await;
    if let Some(axe) = axe {
        assert_accessible(browser, axe, "background questions").await;
    }
    browser
        .find(Locator::Id("q0"))
        .await
        .unwrap()
        .select_by_value("University")
        .await
        .unwrap();
    click(browser, "background-submit").await;
    wait_for_title(browser, "Instructions", Duration::from_secs(10)).await;
    if let Some(axe) = axe {
        assert_accessible(browser, axe, "instructions with the comprehension check").await;
    }
    let attempts = if plan == Plan::FailComprehension {
        2
    } else {
        1
    };
    for attempt in 0..attempts {
        let right = plan != Plan::FailComprehension;
        choose(browser, 0, if right { 1 } else { 0 }).await;
        choose(browser, 1, 0).await;
        click(browser, "start").await;
        if !right && attempt == 0 {
            wait_for_source(
                browser,
                "id=\"comprehension-wrong\"",
                Duration::from_secs(10),
            )
            .await;
            if let Some(axe) = axe {
                assert_accessible(browser, axe, "comprehension, second attempt").await;
            }
        }
    }
    if plan == Plan::FailComprehension {
        wait_for_title(browser, "Thank you", Duration::from_secs(10)).await;
        return (0, text_of(browser, "#completion-code").await);
    }
    let mut judged = 0;
    loop {
        let title = format!("Item {}", judged + 1);
        let started = Instant::now();
        loop {
            let now = browser.title().await.unwrap_or_default();
            if now == title || now == "All done" {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "never reached {title:?}: {now:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if browser.title().await.unwrap() == "All done" {
            break;
        }
        if plan == Plan::Abandon && judged == 1 {
            return (judged, String::new());
        }
        assert!(text_of(browser, "#progress").await.starts_with(&title));
        press(browser, 'c').await;
        judged += 1;
    }
    (judged, text_of(browser, "#completion-code").await)
}

/// Issue 20's study in Chromium: 20 participants through the panel link and 3 through invite
/// links consent, answer the background question and the comprehension check, judge and
/// finish with the completed code and the redirect back to the panel; one fails the check
/// twice and gets the screen-out code; 3 abandon mid-way, the study fills its places, and the
/// panel's submissions export frees theirs for the last three; every solution reaches K.
async fn panel_study_in_chromium(backend: Backend) {
    let app = TestApp::start(backend).await;
    let study = app.fixture(3, 1, 9, 45_000).await.study_id;
    let base = serve(&app).await;
    let mut admin = app.staff_client("ada", UserRole::Admin).await;
    let panel_form = format!("/studies/{study}/panel");
    let opened = admin
        .post_form(
            &panel_form,
            &[
                ("id_param", "PROLIFIC_PID"),
                ("study_param", "STUDY_ID"),
                ("session_param", "SESSION_ID"),
                ("places", "17"),
            ],
        )
        .await;
    assert_eq!(
        opened.status,
        axum::http::StatusCode::SEE_OTHER,
        "{}",
        opened.body
    );
    let saved = admin
        .post_form(
            &format!("/studies/{study}/panel/intake"),
            &[
                ("consent", "# Taking part\n\nYou judge solutions for about **an hour**."),
                ("background", "[choice, required] Highest maths education\n- School\n- University"),
                (
                    "comprehension",
                    "How long do you have for each solution?\n- As long as I like\n* The time the countdown shows\n\nWhat do you judge?\n* Whether every step is right\n- Only the final answer",
                ),
            ],
        )
        .await;
    assert_eq!(
        saved.status,
        axum::http::StatusCode::SEE_OTHER,
        "{}",
        saved.body
    );
    let back_to_panel = format!("{base}/healthz?cc={{code}}");
    let codes = admin
        .post_form(
            &format!("/studies/{study}/panel/completions"),
            &[
                ("completed_code", "D0NE"),
                ("completed_url", &back_to_panel),
                ("screened_out_code", "SCREEN"),
                ("screened_out_url", &back_to_panel),
            ],
        )
        .await;
    assert_eq!(
        codes.status,
        axum::http::StatusCode::SEE_OTHER,
        "{}",
        codes.body
    );
    let link = app.store().study_panel(study).await.unwrap().unwrap().link;
    let entry =
        |i: usize| format!("{base}/s/{link}?PROLIFIC_PID=p{i:02}&STUDY_ID=65aa&SESSION_ID=s{i:02}");
    let axe = axe_source();
    let (_driver, browser) = start_browser().await;

    let plan_of = |i: usize| match i {
        2 | 5 | 8 => Plan::Abandon,
        3 => Plan::FailComprehension,
        _ => Plan::Complete,
    };
    let mut judged = 0;
    for i in 1..=17 {
        let checked = (i <= 3).then_some(axe.as_str());
        let (items, code) = take_part(&browser, &entry(i), plan_of(i), checked).await;
        judged += items;
        match plan_of(i) {
            Plan::Complete => {
                assert_eq!(code, "D0NE", "participant {i}");
                if i == 1 {
                    assert_accessible(&browser, &axe, "all done with a completion code").await;
                    click(&browser, "return-to-panel").await;
                    let url = browser.current_url().await.unwrap().to_string();
                    assert_eq!(url, format!("{base}/healthz?cc=D0NE"));
                }
            }
            Plan::FailComprehension => {
                assert_eq!(code, "SCREEN");
                assert_accessible(&browser, &axe, "screened out").await;
                let href = browser
                    .find(Locator::Id("return-to-panel"))
                    .await
                    .unwrap()
                    .attr("href")
                    .await
                    .unwrap();
                assert_eq!(
                    href.as_deref(),
                    Some(format!("{base}/healthz?cc=SCREEN").as_str())
                );
            }
            Plan::Abandon => assert_eq!(items, 1),
        }
    }
    // Every place is taken: the 18th participant is turned away, with the reason.
    browser.delete_all_cookies().await.unwrap();
    browser.goto(&entry(18)).await.unwrap();
    wait_for_source(&browser, "This study is full", Duration::from_secs(10)).await;
    assert_eq!(
        app.store().study_progress(study).await.unwrap().in_progress,
        3
    );

    // The panel reports the three as returned: their places and items are free again.
    let export = "Submission id,Participant id,Status\nx2,p02,RETURNED\nx5,p05,RETURNED\nx8,p08,RETURNED\nx1,p01,APPROVED\n";
    let returned = admin
        .post_multipart(
            &format!("/studies/{study}/panel/returns"),
            &[],
            export.as_bytes(),
        )
        .await;
    assert!(
        returned.body.contains("3 newly marked"),
        "{}",
        returned.body
    );
    assert_eq!(
        app.store().study_progress(study).await.unwrap().in_progress,
        0
    );
    for i in 18..=20 {
        let (items, code) = take_part(&browser, &entry(i), Plan::Complete, None).await;
        assert_eq!(code, "D0NE", "participant {i}");
        judged += items;
    }
    // Invited raters go through the same steps.
    for token in app.invite(study, 3).await {
        let (items, code) =
            take_part(&browser, &format!("{base}/r/{token}"), Plan::Complete, None).await;
        assert_eq!(code, "D0NE");
        judged += items;
    }
    browser.close().await.unwrap();

    let progress = app.store().study_progress(study).await.unwrap();
    assert_eq!(
        (progress.judged, progress.wanted, progress.in_progress),
        (54, 54, 0),
        "every solution reaches K: {progress:?}"
    );
    assert_eq!(judged, 54);
    let panel = app.store().study_panel(study).await.unwrap().unwrap();
    assert_eq!((panel.participants, panel.returned), (20, 3));
    let review = admin
        .get(&format!("/studies/{study}/panel/review.csv"))
        .await
        .body;
    assert!(
        review.contains("\np02,none,place ended: returned\n"),
        "{review}"
    );
    assert!(
        review.contains("\np03,none,screened out: comprehension check\n"),
        "{review}"
    );
    assert_eq!(review.lines().count(), 21, "{review}");
}
on_both_backends!(panel_study_in_chromium);

/// Presses `key` with Control held (Ctrl+A, Ctrl+C, Ctrl+V).
async fn press_with_control(browser: &Client, key: char) {
    let control = '\u{E009}';
    let keys = KeyActions::new("keyboard".into())
        .then(KeyAction::Down { value: control })
        .then(KeyAction::Down { value: key })
        .then(KeyAction::Up { value: key })
        .then(KeyAction::Up { value: control });
    browser.perform_actions(keys).await.unwrap();
}

/// Issue 23 in a real browser: a probability study comparing two time limits (interleaved).
/// The rater moves the slider with the keyboard (50 % is refused on the page), types and pastes
/// into the justification, and leaves for another tab once; the attempts hold the probability,
/// the justification, the hidden-tab and paste counts, and each item's limit. The researcher's
/// drill-down then lists exactly the incorrect solutions the rater called likely correct, and
/// a solution's page shows it as raters saw it with its judgement.
async fn probability_study_with_time_limit_arms_in_chromium(backend: Backend) {
    use legibility::answers::AnswerRules;
    use legibility::arms::TimeLimits;
    use legibility::domain::{AnswerFormat, ArmDesign, JustificationRule};
    let app = TestApp::start(backend).await;
    let fixture = app.fixture(4, 1, 1, 45_000).await;
    let mut spec = app
        .store()
        .study_setup(fixture.study_id)
        .await
        .unwrap()
        .spec;
    spec.answers = AnswerRules {
        format: AnswerFormat::Probability,
        allow_even_odds: false,
        justification: JustificationRule::Optional,
    };
    spec.time_limits = TimeLimits {
        arms: vec![40_000, 60_000],
        design: ArmDesign::Interleaved,
        block_items: 10,
    };
    app.store()
        .update_study(fixture.study_id, &spec)
        .await
        .unwrap();
    let tokens = app.invite(fixture.study_id, 1).await;
    let base = serve(&app).await;
    let (_driver, browser) = start_browser().await;
    browser
        .goto(&format!("{base}/r/{}", tokens[0]))
        .await
        .unwrap();
    click(&browser, "start").await;

    let mut limits = Vec::new();
    for item in 1..=4u32 {
        wait_for_item(&browser, Some(item), Duration::from_secs(10)).await;
        let limit = browser
            .find(Locator::Id("countdown"))
            .await
            .unwrap()
            .attr("data-limit-ms")
            .await
            .unwrap()
            .unwrap();
        limits.push(limit.parse::<i64>().unwrap());
        if item == 1 {
            assert_accessible(&browser, &axe_source(), "probability item").await;
            // The slider starts at 50 %, which this study leaves out: the page refuses to send.
            click(&browser, "btn-send").await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert_eq!(browser.title().await.unwrap(), "Item 1", "50 % was sent");
            // Type a reason, copy it and paste it once more.
            let reason = browser.find(Locator::Id("justification")).await.unwrap();
            reason.click().await.unwrap();
            reason.send_keys("the totals add up").await.unwrap();
            press_with_control(&browser, 'a').await;
            press_with_control(&browser, 'c').await;
            press(&browser, '\u{E010}').await; // End
            press_with_control(&browser, 'v').await;
            // Another tab in front for a moment.
            let item_tab = browser.window().await.unwrap();
            let other = browser.new_window(true).await.unwrap();
            browser.switch_to_window(other.handle).await.unwrap();
            browser.goto("about:blank").await.unwrap();
            tokio::time::sleep(Duration::from_millis(700)).await;
            browser.close_window().await.unwrap();
            browser.switch_to_window(item_tab).await.unwrap();
        }
        // 50 → 80 % with the arrow key (steps of 5): "likely correct", whatever the truth.
        browser
            .find(Locator::Id("probability"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let shown = text_of(&browser, "#probability-shown").await;
        let start: i64 = shown.trim_end_matches([' ', '%']).parse().unwrap();
        for _ in 0..(80 - start) / 5 {
            press(&browser, '\u{E014}').await; // ArrowRight
        }
        assert_eq!(text_of(&browser, "#probability-shown").await, "80 %");
        click(&browser, "btn-send").await;
    }
    wait_for_item(&browser, None, Duration::from_secs(10)).await;
    let mut sorted = limits.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        vec![40_000, 40_000, 60_000, 60_000],
        "each run of two items holds both limits: {limits:?}"
    );

    let rows = app.attempts(fixture.study_id).await;
    assert_eq!(rows.len(), 4);
    for row in &rows {
        assert_eq!(row["probability"], 80, "{row}");
        assert_eq!(row["verdict"], "correct");
        assert_eq!(
            row["time_limit_ms"].as_i64().unwrap(),
            row["deadline"].as_i64().unwrap() - row["served_at"].as_i64().unwrap()
        );
    }
    let first = &rows[0];
    assert_eq!(first["position"], 1);
    assert!(
        first["justification"]
            .as_str()
            .unwrap()
            .starts_with("the totals add up"),
        "{first}"
    );
    assert!(first["paste_count"].as_i64().unwrap() >= 1, "{first}");
    assert!(first["copy_count"].as_i64().unwrap() >= 1, "{first}");
    assert!(first["hidden_count"].as_i64().unwrap() >= 1, "{first}");
    let flags = first["integrity_flags"].as_str().unwrap();
    assert!(
        flags.contains("left_tab") && flags.contains("pasted"),
        "{flags}"
    );
    assert_eq!(rows[1]["integrity_flags"], "", "{}", rows[1]);

    // The drill-down: the incorrect solutions are the ones that fooled the rater.
    let incorrect: Vec<String> = rows
        .iter()
        .filter(|r| r["is_correct"] == false)
        .map(|r| r["solution_id"].as_str().unwrap().to_string())
        .collect();
    assert!(!incorrect.is_empty());
    staff_login(&browser, &base, &app, "drill").await;
    browser
        .goto(&format!("{base}/studies/{}/report", fixture.study_id))
        .await
        .unwrap();
    click(&browser, "drill-down").await;
    wait_for_source(&browser, "id=\"solution-filter\"", Duration::from_secs(10)).await;
    click(&browser, "show-fooling").await;
    wait_for_source(&browser, "fooled most raters", Duration::from_secs(10)).await;
    let listed = browser
        .find_all(Locator::Css("#solutions tbody tr"))
        .await
        .unwrap();
    assert_eq!(listed.len(), incorrect.len());
    let page = browser.source().await.unwrap();
    for id in &incorrect {
        assert!(page.contains(id.as_str()), "{id} is not listed");
    }
    browser
        .find(Locator::Css("#solutions tbody tr a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_source(&browser, "As raters saw it", Duration::from_secs(10)).await;
    assert_accessible(&browser, &axe_source(), "solution page").await;
    let judgements = text_of(&browser, "#judgements").await;
    assert!(judgements.contains("80 %"), "{judgements}");
    browser.close().await.unwrap();
}
on_both_backends!(probability_study_with_time_limit_arms_in_chromium);

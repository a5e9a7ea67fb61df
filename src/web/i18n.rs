//! The rater pages' words in English and Simplified Chinese (many of the field's raters read
//! Chinese more easily). The language comes from the rater's own choice (a cookie set by the
//! switch on every rater page) or else from the browser's `Accept-Language`.
//!
//! Texts are constants, checked by the compiler: a page cannot ask for a string one language
//! lacks. Strings that hold markup (`<strong>`, `<kbd>`) are written here, never from input.

use std::convert::Infallible;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::header::ACCEPT_LANGUAGE;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use super::extract::{Path, Query};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use serde::Deserialize;

use super::AppState;

/// Cookie holding the rater's chosen language.
pub const LANG_COOKIE: &str = "lang";

/// A language of the rater pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// English (the default).
    En,
    /// Simplified Chinese.
    ZhHans,
}

impl Lang {
    /// The language's code in URLs, cookies and `<html lang>`.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::ZhHans => "zh-Hans",
        }
    }

    /// The language for a code (as in [`Lang::code`]).
    pub fn from_code(code: &str) -> Option<Lang> {
        match code {
            "en" => Some(Lang::En),
            "zh-Hans" => Some(Lang::ZhHans),
            _ => None,
        }
    }

    /// The best supported language of an `Accept-Language` header: the highest-weighted tag
    /// whose primary subtag is `zh` or `en` (first one on ties); English when none is.
    pub fn negotiate(accept_language: &str) -> Lang {
        let mut best: Option<(f32, Lang)> = None;
        for entry in accept_language.split(',') {
            let mut parts = entry.split(';');
            let tag = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let weight = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            let lang = match tag.split('-').next() {
                Some("zh") => Lang::ZhHans,
                Some("en") => Lang::En,
                _ => continue,
            };
            if weight > 0.0 && best.is_none_or(|(w, _)| weight > w) {
                best = Some((weight, lang));
            }
        }
        best.map_or(Lang::En, |(_, lang)| lang)
    }

    /// This language's texts.
    pub fn texts(self) -> &'static Texts {
        match self {
            Lang::En => &EN,
            Lang::ZhHans => &ZH_HANS,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Lang {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let jar = CookieJar::from_headers(&parts.headers);
        if let Some(lang) = jar
            .get(LANG_COOKIE)
            .and_then(|c| Lang::from_code(c.value()))
        {
            return Ok(lang);
        }
        let header = parts
            .headers
            .get(ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        Ok(Lang::negotiate(header))
    }
}

/// Every word a rater page shows, in one language.
#[derive(Debug)]
pub struct Texts {
    /// `<html lang>`.
    pub html_lang: &'static str,
    /// The switch's link text: the *other* language, named in itself.
    pub switch_label: &'static str,
    /// The code the switch changes to.
    pub switch_to: &'static str,
    /// Accessible name of the language switch.
    pub switch_aria: &'static str,
    /// Instructions page title.
    pub instructions_title: &'static str,
    welcome: &'static str,
    /// The task, with markup.
    pub intro: &'static str,
    /// Rules before the time limit, with markup.
    pub rules: [&'static str; 3],
    time_rule: &'static str,
    /// The rules after the time limit, with markup (keys, resuming).
    pub more_rules: [&'static str; 2],
    /// Confidence studies: how to answer.
    pub confidence_rule: &'static str,
    /// Probability studies: how to answer (replaces the keys rule).
    pub probability_rule: &'static str,
    /// Probability studies without 50 %.
    pub even_odds_rule: &'static str,
    /// Justification asked for: required, optional.
    pub justification_required_rule: &'static str,
    /// Justification optional.
    pub justification_optional_rule: &'static str,
    /// A time limit that varies by item: "{a} to {b}".
    time_range: &'static str,
    /// Start link.
    pub start: &'static str,
    item: &'static str,
    /// Heading of the problem.
    pub problem: &'static str,
    /// Heading of the solution.
    pub solution: &'static str,
    /// Verdict button.
    pub correct: &'static str,
    /// Verdict button.
    pub wrong: &'static str,
    /// Accessible name of the countdown.
    pub time_left: &'static str,
    /// Unit after the countdown's number.
    pub seconds_unit: &'static str,
    /// What screen readers hear near the end; `{n}` is the number of seconds.
    pub seconds_left_template: &'static str,
    /// Message page: no items left.
    pub all_done_title: &'static str,
    all_done: &'static str,
    /// Message page: the study is closed.
    pub closed_title: &'static str,
    /// Message page text.
    pub closed_message: &'static str,
    /// Message page: the answer came too late.
    pub time_ran_out_title: &'static str,
    /// Message page text.
    pub time_ran_out_message: &'static str,
    /// Link to the next item.
    pub continue_label: &'static str,
    /// Error page: no valid invite link.
    pub link_needed_title: &'static str,
    /// Error page text.
    pub link_needed_message: &'static str,
    practice_item: &'static str,
    screening_item: &'static str,
    /// Note on practice items: feedback follows.
    pub practice_note: &'static str,
    /// Feedback page title.
    pub feedback_title: &'static str,
    /// Feedback: the rater's answer was right.
    pub feedback_right: &'static str,
    /// Feedback: the rater's answer was not right.
    pub feedback_not_right: &'static str,
    /// Feedback: the solution was correct.
    pub feedback_solution_correct: &'static str,
    /// Feedback: the solution was wrong.
    pub feedback_solution_wrong: &'static str,
    expected_answer: &'static str,
    /// Message page: screening not passed.
    pub not_admitted_title: &'static str,
    /// Message page text.
    pub not_admitted_message: &'static str,
    /// Message page: workload cap reached.
    pub workload_title: &'static str,
    workload_message: &'static str,
    /// End pages of a study with panel completion codes: the code's label.
    pub completion_code_label: &'static str,
    /// The link back to the panel with the code.
    pub return_to_panel: &'static str,
    /// Message page: a suggested break.
    pub break_title: &'static str,
    break_message: &'static str,
    /// Step page heading.
    pub step_title: &'static str,
    /// Step page help.
    pub step_help: &'static str,
    /// Step page: no flag.
    pub step_skip: &'static str,
    /// Confidence studies: the question above the confidence choices.
    pub confidence_question: &'static str,
    /// Probability studies: the slider's label.
    pub probability_question: &'static str,
    /// Probability studies: the send button.
    pub send_answer: &'static str,
    /// Justification box label.
    pub justification_label: &'static str,
    /// Justification box label when it may be left empty.
    pub justification_optional: &'static str,
    /// Above a refused answer: the item and its countdown go on.
    pub answer_refused_note: &'static str,
    step_label: &'static str,
    practice_rule: &'static str,
    screening_rule: &'static str,
    workload_rule: &'static str,
    /// Consent page title.
    pub consent_title: &'static str,
    /// Consent page: agree button.
    pub consent_accept: &'static str,
    /// Consent page: decline button.
    pub consent_decline: &'static str,
    /// Message page: consent declined.
    pub declined_title: &'static str,
    /// Message page text.
    pub declined_message: &'static str,
    /// Background questions page title.
    pub background_title: &'static str,
    /// Background questions page help.
    pub background_help: &'static str,
    /// Marks an optional question.
    pub optional_label: &'static str,
    /// Choice questions: the empty option.
    pub choose_label: &'static str,
    /// Comprehension section heading.
    pub comprehension_title: &'static str,
    comprehension_help: &'static str,
    comprehension_wrong: &'static str,
    item_progress: &'static str,
    answer_required: &'static str,
    answer_not_an_option: &'static str,
    answer_out_of_range: &'static str,
    answer_not_a_number: &'static str,
    answer_too_long: &'static str,
    hours_minutes: &'static str,
    minutes: &'static str,
    /// Comprehension form's submit button.
    pub comprehension_submit: &'static str,
    /// Message page text: comprehension failed on every attempt.
    pub comprehension_failed_message: &'static str,
    /// Message page text: the silent gold items failed, where that ends the study.
    pub failed_quality_message: &'static str,
}

impl Texts {
    /// "Welcome, NAME".
    pub fn welcome(&self, name: impl std::fmt::Display) -> String {
        self.welcome.replace("{name}", &name.to_string())
    }

    /// "15 to 60": a time limit that varies between items.
    pub fn time_range(
        &self,
        shortest: impl std::fmt::Display,
        longest: impl std::fmt::Display,
    ) -> String {
        self.time_range
            .replace("{a}", &shortest.to_string())
            .replace("{b}", &longest.to_string())
    }

    /// The time-limit rule with the limit in seconds (markup; the number is ours).
    pub fn time_rule(&self, seconds: impl std::fmt::Display) -> String {
        self.time_rule.replace("{s}", &seconds.to_string())
    }

    /// "Item N".
    pub fn item(&self, number: impl std::fmt::Display) -> String {
        self.item.replace("{n}", &number.to_string())
    }

    /// "Practice item N of M".
    pub fn practice_item(&self, number: i64, of: i64) -> String {
        self.practice_item
            .replace("{n}", &number.to_string())
            .replace("{of}", &of.to_string())
    }

    /// "Qualification item N of M".
    pub fn screening_item(&self, number: i64, of: i64) -> String {
        self.screening_item
            .replace("{n}", &number.to_string())
            .replace("{of}", &of.to_string())
    }

    /// The problem's expected final answer, after a practice item.
    pub fn expected_answer(&self, answer: impl std::fmt::Display) -> String {
        self.expected_answer
            .replace("{answer}", &answer.to_string())
    }

    /// The workload cap's message with the number of items judged.
    pub fn workload_message(&self, items_done: impl std::fmt::Display) -> String {
        self.workload_message
            .replace("{n}", &items_done.to_string())
    }

    /// The break's message with the number of items judged.
    pub fn break_message(&self, items_done: impl std::fmt::Display) -> String {
        self.break_message.replace("{n}", &items_done.to_string())
    }

    /// The instructions' line on practice items.
    pub fn practice_rule(&self, items: i64) -> String {
        self.practice_rule.replace("{n}", &items.to_string())
    }

    /// The instructions' line on the qualification set and its pass mark (a percentage).
    pub fn screening_rule(&self, items: i64, percent: impl std::fmt::Display) -> String {
        self.screening_rule
            .replace("{n}", &items.to_string())
            .replace("{p}", &percent.to_string())
    }

    /// The instructions' line on the workload cap, in hours.
    pub fn workload_rule(&self, hours: impl std::fmt::Display) -> String {
        self.workload_rule.replace("{h}", &hours.to_string())
    }

    /// Accessible name of step button N.
    pub fn step_label(&self, number: impl std::fmt::Display) -> String {
        self.step_label.replace("{n}", &number.to_string())
    }

    /// "Item N of at most M · T of your time left" on study items.
    pub fn item_progress(&self, number: i64, most: i64, time_left_ms: i64) -> String {
        let minutes = time_left_ms / 60_000;
        let left = if minutes >= 60 {
            self.hours_minutes
                .replace("{h}", &(minutes / 60).to_string())
                .replace("{m}", &(minutes % 60).to_string())
        } else {
            self.minutes.replace("{m}", &minutes.to_string())
        };
        self.item_progress
            .replace("{n}", &number.to_string())
            .replace("{of}", &most.max(number).to_string())
            .replace("{left}", &left)
    }

    /// What is wrong with a background answer, beside its question.
    pub fn answer_problem(&self, problem: crate::intake::AnswerProblem) -> String {
        use crate::intake::AnswerProblem;
        match problem {
            AnswerProblem::Required => self.answer_required.to_string(),
            AnswerProblem::NotAnOption => self.answer_not_an_option.to_string(),
            AnswerProblem::OutOfRange { min, max } => self
                .answer_out_of_range
                .replace("{min}", &min.to_string())
                .replace("{max}", &max.to_string()),
            AnswerProblem::NotANumber => self.answer_not_a_number.to_string(),
            AnswerProblem::TooLong => self
                .answer_too_long
                .replace("{n}", &crate::intake::MAX_TEXT_ANSWER_CHARS.to_string()),
        }
    }

    /// The comprehension section's help, with the attempts left.
    pub fn comprehension_help(&self, attempts_left: impl std::fmt::Display) -> String {
        self.comprehension_help
            .replace("{n}", &attempts_left.to_string())
    }

    /// After a failed attempt: how many answers were not right.
    pub fn comprehension_wrong(&self, wrong: impl std::fmt::Display) -> String {
        self.comprehension_wrong.replace("{k}", &wrong.to_string())
    }

    /// The last page's thanks with the number of items judged.
    pub fn all_done(&self, items_done: impl std::fmt::Display) -> String {
        self.all_done.replace("{n}", &items_done.to_string())
    }
}

/// English.
pub static EN: Texts = Texts {
    html_lang: "en",
    switch_label: "中文",
    switch_to: "zh-Hans",
    switch_aria: "Language: switch to Simplified Chinese",
    instructions_title: "Instructions",
    welcome: "Welcome, {name}",
    intro: "You will see grade-school math problems, each with a written solution. For each one, decide whether the <strong>whole solution</strong> is correct.",
    rules: [
        "Judge the whole solution, not only the final answer: every step must be right for it to be correct.",
        "Be lenient about language, spelling and formatting; judge the mathematics.",
        "Do not use a calculator or any other tool. Work it out in your head or on paper.",
    ],
    time_rule: "Each solution has a strict time limit of <strong>{s} seconds</strong>, shown by a countdown. If time is running out, give your best guess. When the countdown reaches zero the item is recorded as a timeout and the next one appears.",
    more_rules: [
        "Press <kbd>C</kbd> for <em>Correct</em> or <kbd>W</kbd> for <em>Wrong</em>, or use the buttons (<kbd>Tab</kbd> moves between them).",
        "You can close the page and come back with your link; an item in progress keeps its countdown.",
    ],
    confidence_rule: "With each answer, choose how sure you are: from 50 % (a guess) to 100 % (certain).",
    probability_rule: "Move the slider to how likely it is that the solution is correct, from 0 % (surely wrong) to 100 % (surely correct); the arrow keys move it in steps of 5. Then press <em>Send answer</em>.",
    even_odds_rule: "50 % is not allowed: lean one way, above or below it.",
    justification_required_rule: "Write a short reason for each answer (a sentence is enough).",
    justification_optional_rule: "You may write a short reason for your answer.",
    time_range: "{a} to {b}",
    start: "Start judging",
    item: "Item {n}",
    problem: "Problem",
    solution: "Solution",
    correct: "Correct",
    wrong: "Wrong",
    time_left: "Time left",
    seconds_unit: "s",
    seconds_left_template: "{n} seconds left",
    all_done_title: "All done",
    all_done: "There are no more items for you in this study. You judged {n}. Thank you!",
    closed_title: "Study closed",
    closed_message: "This study is not collecting judgements at the moment. Thank you for your help.",
    time_ran_out_title: "Time ran out",
    time_ran_out_message: "The time for this item had run out well before your answer arrived, so your answer was not recorded. Go on with the next item.",
    continue_label: "Continue",
    link_needed_title: "Your invite link is needed",
    link_needed_message: "Open the personal link you were sent (again) to continue judging. If it no longer works, ask the study's organisers for a new one.",
    practice_item: "Practice item {n} of {of}",
    screening_item: "Qualification item {n} of {of}",
    practice_note: "Practice: after you answer, you will see the right answer. Practice answers are not part of the study.",
    feedback_title: "Practice: the right answer",
    feedback_right: "Your answer was right.",
    feedback_not_right: "Your answer was not right.",
    feedback_solution_correct: "This solution is correct.",
    feedback_solution_wrong: "This solution is wrong.",
    expected_answer: "The problem's answer is {answer}.",
    not_admitted_title: "Thank you",
    not_admitted_message: "You did not reach the accuracy this study needs on the qualification items, so it has no items for you. Thank you for your time.",
    workload_title: "You have reached the time limit",
    workload_message: "You have spent this study's maximum time on items. Thank you: you judged {n} items.",
    completion_code_label: "Your completion code:",
    return_to_panel: "Return to the panel with your code",
    break_title: "Time for a break",
    break_message: "You have judged {n} items. Rest for a few minutes: the next item's countdown starts only when you continue.",
    step_title: "Which step is the first wrong one?",
    step_help: "Choose the first wrong step, or skip. The item's countdown still runs.",
    step_skip: "Skip",
    confidence_question: "How sure are you?",
    probability_question: "How likely is it that the solution is correct?",
    send_answer: "Send answer",
    justification_label: "Why? (a sentence is enough)",
    justification_optional: "Why? (optional)",
    answer_refused_note: "Your answer was not sent: fix it and send again. The countdown goes on.",
    step_label: "Step {n}",
    practice_rule: "You start with {n} practice items: after each one you will see the right answer. They are not part of the study.",
    screening_rule: "Then come {n} qualification items, without feedback. The study's own items follow for raters who get at least {p}% of them right.",
    workload_rule: "You can spend at most {h} hours on items in this study; the page tells you when you reach it.",
    consent_title: "Information and consent",
    consent_accept: "I agree to take part",
    consent_decline: "I do not agree",
    declined_title: "Thank you",
    declined_message: "You did not agree to take part, so the study ends here for you. Thank you for your time.",
    background_title: "About you",
    background_help: "Please answer these questions before the instructions. Questions marked optional may be left blank.",
    optional_label: "(optional)",
    choose_label: "Choose…",
    comprehension_title: "Check your understanding",
    comprehension_help: "Answer these questions about the instructions above to start. Attempts left: {n}.",
    comprehension_wrong: "{k} of your answers were not right. Read the instructions again and answer once more.",
    comprehension_submit: "Check my answers and start",
    item_progress: "Item {n} of at most {of} · {left} of your time left",
    answer_required: "Please answer this question.",
    answer_not_an_option: "Please choose one of the options.",
    answer_out_of_range: "Please give a number from {min} to {max}.",
    answer_not_a_number: "Please give a number, such as 3 or 2.5.",
    answer_too_long: "Please keep it under {n} characters.",
    hours_minutes: "{h} h {m} min",
    minutes: "{m} min",
    comprehension_failed_message: "Your answers to the questions on the instructions were not right on either attempt, so this study has no items for you. Thank you for your time.",
    failed_quality_message: "Too few of your answers on this study's check items were right, so it has no more items for you. Thank you for your time.",
};

/// Simplified Chinese.
pub static ZH_HANS: Texts = Texts {
    html_lang: "zh-Hans",
    switch_label: "English",
    switch_to: "en",
    switch_aria: "语言：切换到英文",
    instructions_title: "说明",
    welcome: "欢迎，{name}",
    intro: "你将看到一些小学数学题，每道题附有一份书面解答。请判断每份<strong>完整的解答</strong>是否正确。",
    rules: [
        "请评判整份解答，而不只是最终答案：只有每一步都正确，解答才算正确。",
        "对语言、拼写和格式可以宽容，只评判其中的数学。",
        "请不要使用计算器或任何其他工具，用心算或在纸上演算。",
    ],
    time_rule: "每份解答都有严格的时间限制：<strong>{s} 秒</strong>，由倒计时显示。时间快到时，请给出你最好的判断。倒计时归零时，这道题记为超时，并显示下一题。",
    more_rules: [
        "按 <kbd>C</kbd> 表示<em>正确</em>，按 <kbd>W</kbd> 表示<em>错误</em>，也可以使用按钮（用 <kbd>Tab</kbd> 键在按钮间移动）。",
        "你可以关闭页面，之后用你的链接回来；进行中的题目会保留它的倒计时。",
    ],
    confidence_rule: "每次回答时，请选择你有多确定：从 50 %（猜测）到 100 %（确定）。",
    probability_rule: "把滑块移到你认为这份解答正确的可能性，从 0 %（肯定错误）到 100 %（肯定正确）；方向键每次移动 5。然后按<em>提交答案</em>。",
    even_odds_rule: "不能选择 50 %：请偏向一边，高于或低于 50 %。",
    justification_required_rule: "请为每个回答写一个简短的理由（一句话即可）。",
    justification_optional_rule: "你可以为你的回答写一个简短的理由。",
    time_range: "{a} 至 {b}",
    start: "开始评判",
    item: "第 {n} 题",
    problem: "题目",
    solution: "解答",
    correct: "正确",
    wrong: "错误",
    time_left: "剩余时间",
    seconds_unit: "秒",
    seconds_left_template: "还剩 {n} 秒",
    all_done_title: "全部完成",
    all_done: "本研究已没有更多题目给你。你共评判了 {n} 道题。谢谢！",
    closed_title: "研究已关闭",
    closed_message: "本研究目前不收集评判。感谢你的帮助。",
    time_ran_out_title: "时间已到",
    time_ran_out_message: "你的答案送达时，这道题的时间早已用完，因此答案没有被记录。请继续下一题。",
    continue_label: "继续",
    link_needed_title: "需要你的邀请链接",
    link_needed_message: "请（再次）打开发给你的个人链接以继续评判。如果链接已失效，请向研究的组织者索取新的链接。",
    practice_item: "练习题 {n} / {of}",
    screening_item: "资格测试题 {n} / {of}",
    practice_note: "练习：回答后会显示正确答案。练习的回答不计入研究。",
    feedback_title: "练习：正确答案",
    feedback_right: "你的回答是对的。",
    feedback_not_right: "你的回答不对。",
    feedback_solution_correct: "这份解答是正确的。",
    feedback_solution_wrong: "这份解答是错误的。",
    expected_answer: "这道题的答案是 {answer}。",
    not_admitted_title: "谢谢",
    not_admitted_message: "你在资格测试题上的正确率没有达到本研究的要求，因此没有题目分配给你。感谢你付出的时间。",
    workload_title: "你已达到时间上限",
    workload_message: "你在本研究中答题的时间已达到上限。谢谢：你共评判了 {n} 道题。",
    completion_code_label: "你的完成代码：",
    return_to_panel: "带着完成代码返回招募平台",
    break_title: "休息一下",
    break_message: "你已评判了 {n} 道题。请休息几分钟：只有在你继续之后，下一题的倒计时才会开始。",
    step_title: "哪一步是第一个错误的步骤？",
    step_help: "请选择第一个错误的步骤，或跳过。这道题的倒计时仍在进行。",
    step_skip: "跳过",
    confidence_question: "你有多确定？",
    probability_question: "这份解答正确的可能性有多大？",
    send_answer: "提交答案",
    justification_label: "理由？（一句话即可）",
    justification_optional: "理由？（可选）",
    answer_refused_note: "你的答案没有提交：请修改后再次提交。倒计时仍在继续。",
    step_label: "第 {n} 步",
    practice_rule: "你将先做 {n} 道练习题：每道题回答后会显示正确答案。练习题不计入研究。",
    screening_rule: "接着是 {n} 道资格测试题，不显示答案。答对至少 {p}% 的评判者才会进入本研究的正式题目。",
    workload_rule: "你在本研究中答题的总时间最多为 {h} 小时；达到上限时页面会告诉你。",
    consent_title: "知情同意",
    consent_accept: "我同意参加",
    consent_decline: "我不同意",
    declined_title: "谢谢",
    declined_message: "你没有同意参加，因此研究到此为止。感谢你付出的时间。",
    background_title: "关于你",
    background_help: "请在阅读说明之前回答这些问题。标为可选的问题可以不填。",
    optional_label: "（可选）",
    choose_label: "请选择…",
    comprehension_title: "理解检查",
    comprehension_help: "请回答以下关于上面说明的问题，然后开始。剩余尝试次数：{n}。",
    comprehension_wrong: "你有 {k} 个回答不正确。请再读一遍说明，然后重新回答。",
    comprehension_submit: "检查我的回答并开始",
    item_progress: "第 {n} 题，最多 {of} 题 · 你还剩 {left}",
    answer_required: "请回答这个问题。",
    answer_not_an_option: "请从选项中选择一个。",
    answer_out_of_range: "请填写 {min} 到 {max} 之间的数字。",
    answer_not_a_number: "请填写一个数字，例如 3 或 2.5。",
    answer_too_long: "请不要超过 {n} 个字符。",
    hours_minutes: "{h} 小时 {m} 分钟",
    minutes: "{m} 分钟",
    comprehension_failed_message: "你两次对说明相关问题的回答都不正确，因此本研究没有题目分配给你。感谢你付出的时间。",
    failed_quality_message: "你在本研究检查题上的正确回答太少，因此不再有题目分配给你。感谢你付出的时间。",
};

/// Routes of the language switch.
pub fn routes() -> Router<AppState> {
    Router::new().route("/lang/{code}", get(switch))
}

/// `?back=` of the switch: the page to return to.
#[derive(Debug, Deserialize)]
struct Back {
    #[serde(default)]
    back: String,
}

/// Where the switch may send the browser back to: a path on this site only (no `//host` or
/// `/\host`, which browsers treat as another site).
pub fn safe_back(back: &str) -> &str {
    let local = back.starts_with('/') && !back.starts_with("//") && !back.starts_with("/\\");
    if local { back } else { "/rate" }
}

/// `GET /lang/{code}?back=PATH`: remembers the language for a year and returns to the page.
async fn switch(Path(code): Path<String>, Query(back): Query<Back>, jar: CookieJar) -> Response {
    let lang = Lang::from_code(&code).unwrap_or(Lang::En);
    let cookie = Cookie::build((LANG_COOKIE, lang.code()))
        .path("/")
        .same_site(SameSite::Lax)
        .http_only(true)
        .max_age(time::Duration::days(365))
        .build();
    (jar.add(cookie), Redirect::to(safe_back(&back.back))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_best_supported_tag() {
        assert_eq!(Lang::negotiate(""), Lang::En);
        assert_eq!(Lang::negotiate("zh-CN,zh;q=0.9,en;q=0.8"), Lang::ZhHans);
        assert_eq!(Lang::negotiate("en-GB,en;q=0.9,zh;q=0.8"), Lang::En);
        assert_eq!(Lang::negotiate("fr-FR,fr;q=0.9,zh-TW;q=0.5"), Lang::ZhHans);
        assert_eq!(Lang::negotiate("de, en;q=0.2, zh;q=0.7"), Lang::ZhHans);
        assert_eq!(Lang::negotiate("zh;q=0, en"), Lang::En);
        assert_eq!(Lang::negotiate("ja"), Lang::En);
    }

    #[test]
    fn codes_round_trip() {
        for lang in [Lang::En, Lang::ZhHans] {
            assert_eq!(Lang::from_code(lang.code()), Some(lang));
            assert_eq!(lang.texts().html_lang, lang.code());
            assert_eq!(
                Lang::from_code(lang.texts().switch_to).map(|l| l.texts().switch_to),
                Some(lang.code())
            );
        }
        assert_eq!(Lang::from_code("xx"), None);
    }

    #[test]
    fn parameterised_texts_fill_in_their_numbers() {
        assert_eq!(EN.item(3), "Item 3");
        assert_eq!(
            EN.item_progress(3, 40, 232 * 60_000 + 59_000),
            "Item 3 of at most 40 · 3 h 52 min of your time left"
        );
        assert_eq!(
            EN.item_progress(7, 5, 45 * 60_000),
            "Item 7 of at most 7 · 45 min of your time left"
        );
        let range = crate::intake::AnswerProblem::OutOfRange {
            min: 0.0,
            max: 80.0,
        };
        assert_eq!(
            EN.answer_problem(range),
            "Please give a number from 0 to 80."
        );
        assert_eq!(ZH_HANS.answer_problem(range), "请填写 0 到 80 之间的数字。");
        assert_eq!(
            ZH_HANS.item_progress(3, 40, 5 * 60_000),
            "第 3 题，最多 40 题 · 你还剩 5 分钟"
        );
        assert_eq!(ZH_HANS.item(3), "第 3 题");
        assert!(ZH_HANS.time_rule("45").contains("45 秒"));
        assert!(EN.all_done(7).contains("You judged 7."));
        assert_eq!(ZH_HANS.welcome("小明"), "欢迎，小明");
        assert_eq!(EN.practice_item(2, 3), "Practice item 2 of 3");
        assert_eq!(ZH_HANS.screening_item(4, 30), "资格测试题 4 / 30");
        assert!(ZH_HANS.break_message(20).contains("20 道题"));
        assert_eq!(EN.step_label(2), "Step 2");
    }

    #[test]
    fn the_switch_returns_only_to_this_site() {
        assert_eq!(safe_back("/rate/item"), "/rate/item");
        assert_eq!(safe_back("//evil.example/x"), "/rate");
        assert_eq!(safe_back("/\\evil.example"), "/rate");
        assert_eq!(safe_back("https://evil.example"), "/rate");
        assert_eq!(safe_back(""), "/rate");
    }
}

//! Who is asking: staff sessions (cookie), staff scripts (personal API token, report data only),
//! raters (invite token in a cookie or a bearer header), and from which client address.
//! Extractors reject early so handlers only see authorised callers.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::header::{ACCEPT, AUTHORIZATION, USER_AGENT};
use axum::http::request::Parts;
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};

use super::{ApiError, AppState, WebError};
use crate::auth;
use crate::domain::UserRole;
use crate::store::access::ClientInfo;
use crate::store::raters::Rater;
use crate::store::users::User;

/// Cookie holding a staff session token.
pub const SESSION_COOKIE: &str = "ll_session";
/// Cookie holding a rater's invite token.
pub const RATER_COOKIE: &str = "ll_rater";

/// A cookie for a secret token: not readable by scripts, not sent by other sites' requests,
/// kept for `max_age` (so a rater who closes the browser resumes without the link).
pub fn secret_cookie(
    name: &'static str,
    value: String,
    secure: bool,
    max_age: time::Duration,
) -> Cookie<'static> {
    Cookie::build((name, value))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .max_age(max_age)
        .build()
}

/// How long a rater's browser keeps their invite token.
pub const RATER_COOKIE_DAYS: i64 = 30;

/// Any logged-in staff member (admin or researcher).
#[derive(Debug, Clone)]
pub struct Staff(pub User);

impl Staff {
    /// Admins may import, invite and manage; researchers define and watch studies.
    pub fn is_admin(&self) -> bool {
        self.0.role == UserRole::Admin
    }
}

/// A logged-in admin.
#[derive(Debug, Clone)]
pub struct Admin(pub User);

impl FromRequestParts<AppState> for Staff {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        let user = match CookieJar::from_headers(&parts.headers).get(SESSION_COOKIE) {
            Some(cookie) => {
                state
                    .store
                    .session_user(&auth::token_hash(cookie.value()), state.clock.now_ms())
                    .await?
            }
            None => None,
        };
        user.map(Staff).ok_or_else(|| login_required(parts))
    }
}

/// The refusal for a request without a valid staff session: browsers navigating to a page are
/// sent to the login page; scripts get 401 JSON (see [`wants_api_answer`]).
fn login_required(parts: &Parts) -> WebError {
    if wants_api_answer(parts.uri.path(), &parts.headers) {
        WebError::CredentialsRequired(
            "log in, or send Authorization: Bearer with a personal API token (report and download routes only)",
        )
    } else {
        WebError::LoginRequired
    }
}

/// Whether a request without credentials should get 401 JSON rather than the redirect to the
/// login page: data routes (`.json` and the downloads), requests carrying `Authorization`, and
/// clients whose `Accept` header does not ask for HTML. Browsers navigating to a page always ask
/// for HTML; a request with no `Accept` at all keeps the redirect.
pub fn wants_api_answer(path: &str, headers: &HeaderMap) -> bool {
    const DATA: [&str; 4] = [".json", ".jsonl", ".csv", ".parquet"];
    if DATA.iter().any(|ext| path.ends_with(ext)) || headers.contains_key(AUTHORIZATION) {
        return true;
    }
    headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| !accept.contains("text/html"))
}

/// A staff member reading report data: by session cookie like any page, or by a personal API
/// token in `Authorization: Bearer` (a researcher's script). Only read-only report and download
/// routes take this extractor; every page and form takes [`Staff`], which ignores tokens.
#[derive(Debug, Clone)]
pub struct ReportReader(pub User);

impl FromRequestParts<AppState> for ReportReader {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        let Some(token) = bearer_token(parts) else {
            return Staff::from_request_parts(parts, state)
                .await
                .map(|Staff(user)| ReportReader(user));
        };
        // A request that sends a token stands or falls by it, cookie or not.
        let user = match token.starts_with(auth::API_TOKEN_PREFIX) {
            true => {
                state
                    .store
                    .api_token_user(&auth::token_hash(token), state.clock.now_ms())
                    .await?
            }
            false => None,
        };
        user.map(ReportReader).ok_or(WebError::CredentialsRequired(
            "the API token is unknown, revoked or expired",
        ))
    }
}

/// An admin's script changing a study's panel places: by an admin's personal API token in
/// `Authorization: Bearer`, or an admin's session like any form. The one write that takes a
/// token (reporting returned participants from the panel's own API); every other write takes
/// [`Admin`] or [`Staff`].
#[derive(Debug, Clone)]
pub struct AdminScript(pub User);

impl FromRequestParts<AppState> for AdminScript {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        let ReportReader(user) = ReportReader::from_request_parts(parts, state).await?;
        if user.role == UserRole::Admin {
            Ok(AdminScript(user))
        } else {
            Err(WebError::Forbidden)
        }
    }
}

/// The token of an `Authorization: Bearer …` header, if any.
fn bearer_token(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        let staff = Staff::from_request_parts(parts, state).await?;
        if staff.is_admin() {
            Ok(Admin(staff.0))
        } else {
            Err(WebError::Forbidden)
        }
    }
}

/// The invite token a request carries, from the rater cookie or `Authorization: Bearer`.
fn rater_token(parts: &Parts) -> Option<String> {
    if let Some(bearer) = bearer_token(parts) {
        return Some(bearer.to_string());
    }
    CookieJar::from_headers(&parts.headers)
        .get(RATER_COOKIE)
        .map(|c| c.value().to_string())
}

async fn rater_from_parts(parts: &Parts, state: &AppState) -> Result<Rater, WebError> {
    let token = rater_token(parts).ok_or(WebError::RaterUnknown)?;
    state
        .store
        .rater_by_token(&token)
        .await?
        .ok_or(WebError::RaterUnknown)
}

/// A rater on a page (errors render as HTML).
#[derive(Debug, Clone)]
pub struct RaterPage(pub Rater);

impl FromRequestParts<AppState> for RaterPage {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        rater_from_parts(parts, state).await.map(RaterPage)
    }
}

/// A rater on the JSON API (errors render as JSON).
#[derive(Debug, Clone)]
pub struct RaterApi(pub Rater);

impl FromRequestParts<AppState> for RaterApi {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        rater_from_parts(parts, state)
            .await
            .map(RaterApi)
            .map_err(ApiError)
    }
}

/// The client a request comes from: its address as throttling and the session list key it, and
/// its User-Agent. Never refuses a request.
#[derive(Debug, Clone)]
pub struct Requester(pub ClientInfo);

impl FromRequestParts<AppState> for Requester {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Infallible> {
        // The server adds the TCP peer (`serve` uses `into_make_service_with_connect_info`);
        // requests driven in-process without it all count as one unknown client.
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        let forwarded: Vec<&str> = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let address = client_address(peer, &forwarded, &state.config.trusted_proxies);
        let user_agent = parts
            .headers
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        Ok(Requester(ClientInfo::new(address, user_agent)))
    }
}

/// The client address of a request from TCP peer `peer`. `X-Forwarded-For` (the values of
/// every such header, in order) is believed only when the peer is one of `trusted` proxies:
/// then the client is the last hop that is not a trusted proxy, since every earlier entry is
/// whatever the client chose to send. IPv6 clients are keyed by their /64 network, which one
/// subscriber typically holds whole.
pub fn client_address(peer: Option<IpAddr>, forwarded_for: &[&str], trusted: &[IpAddr]) -> String {
    let Some(peer) = peer else {
        return "unknown".into();
    };
    let mut client = peer;
    if trusted.contains(&peer) {
        let hops = forwarded_for
            .iter()
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        for hop in hops.iter().rev() {
            match hop.parse::<IpAddr>() {
                Ok(ip) if trusted.contains(&ip) => continue,
                Ok(ip) => {
                    client = ip;
                    break;
                }
                // Not an address: stop at the last hop a trusted proxy vouched for.
                Err(_) => break,
            }
        }
    }
    address_key(client)
}

/// An address as text; IPv6 as its /64 network, IPv4-mapped IPv6 as plain IPv4.
fn address_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                let network = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
                format!("{network}/64")
            }
        },
    }
}

/// A browser's User-Agent in a few words for the session list: "Firefox on Linux", "curl".
pub fn browser_summary(user_agent: &str) -> String {
    if user_agent.trim().is_empty() {
        return "unknown browser".into();
    }
    // Order matters: Edge and Opera also say Chrome, Chrome also says Safari.
    const BROWSERS: [(&str, &str); 8] = [
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("Chromium/", "Chromium"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
        ("curl/", "curl"),
        ("python", "Python"),
    ];
    const SYSTEMS: [(&str, &str); 6] = [
        ("Android", "Android"),
        ("iPhone", "iOS"),
        ("iPad", "iOS"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("Linux", "Linux"),
    ];
    let find = |table: &[(&str, &'static str)]| {
        table
            .iter()
            .find(|(needle, _)| user_agent.contains(needle))
            .map(|&(_, name)| name)
    };
    match (find(&BROWSERS), find(&SYSTEMS)) {
        (Some(browser), Some(system)) => format!("{browser} on {system}"),
        (Some(browser), None) => browser.into(),
        (None, Some(system)) => format!("a browser on {system}"),
        (None, None) => user_agent.chars().take(40).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_a_trusted_proxy() {
        let proxy = ip("10.9.9.9");
        // Without a trusted proxy the header is whatever the client wrote: ignored.
        assert_eq!(
            client_address(Some(ip("203.0.113.7")), &["1.2.3.4"], &[]),
            "203.0.113.7"
        );
        assert_eq!(
            client_address(Some(ip("203.0.113.7")), &["1.2.3.4"], &[proxy]),
            "203.0.113.7"
        );
        // Behind the proxy: the last hop it appended, not what the client put before it.
        assert_eq!(
            client_address(Some(proxy), &["1.2.3.4, 198.51.100.2"], &[proxy]),
            "198.51.100.2"
        );
        // Chains of trusted proxies are skipped; several headers read as one list.
        let inner = ip("10.9.9.8");
        assert_eq!(
            client_address(
                Some(proxy),
                &["1.2.3.4", "198.51.100.2, 10.9.9.8"],
                &[proxy, inner]
            ),
            "198.51.100.2"
        );
        // Nothing usable: the proxy itself.
        assert_eq!(client_address(Some(proxy), &[], &[proxy]), "10.9.9.9");
        assert_eq!(
            client_address(Some(proxy), &["garbage"], &[proxy]),
            "10.9.9.9"
        );
        assert_eq!(client_address(None, &["1.2.3.4"], &[proxy]), "unknown");
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_network() {
        assert_eq!(
            client_address(Some(ip("2001:db8:1:2:aaaa::1")), &[], &[]),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            client_address(Some(ip("2001:db8:1:2:bbbb::9")), &[], &[]),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            client_address(Some(ip("::ffff:192.0.2.1")), &[], &[]),
            "192.0.2.1"
        );
    }

    #[test]
    fn scripts_get_json_and_browsers_the_login_redirect() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.insert(*name, value.parse().unwrap());
            }
            map
        };
        let browser = headers(&[("accept", "text/html,application/xhtml+xml,*/*;q=0.8")]);
        assert!(!wants_api_answer("/studies", &browser));
        assert!(!wants_api_answer("/studies", &headers(&[])));
        assert!(wants_api_answer("/studies/x/report.json", &browser));
        assert!(wants_api_answer("/studies/x/attempts.csv", &headers(&[])));
        assert!(wants_api_answer(
            "/studies/x/attempts.parquet",
            &headers(&[])
        ));
        assert!(wants_api_answer("/studies", &headers(&[("accept", "*/*")])));
        assert!(wants_api_answer(
            "/studies",
            &headers(&[("authorization", "Bearer x")])
        ));
    }

    #[test]
    fn user_agents_read_as_browser_and_system() {
        let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
        let chrome_mac = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
        let edge = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0";
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";
        assert_eq!(browser_summary(firefox), "Firefox on Linux");
        assert_eq!(browser_summary(chrome_mac), "Chrome on macOS");
        assert_eq!(browser_summary(edge), "Edge on Windows");
        assert_eq!(browser_summary(iphone), "Safari on iOS");
        assert_eq!(browser_summary("curl/8.5.0"), "curl");
        assert_eq!(browser_summary(""), "unknown browser");
        assert_eq!(browser_summary("SomeBot 1.0"), "SomeBot 1.0");
    }
}

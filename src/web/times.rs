//! Moments on staff pages: one helper, so every page shows times the same way.
//!
//! The server cannot know the viewer's time zone, so it writes a readable UTC text inside a
//! `<time datetime="…">` element (`2026-12-06 18:20 UTC`); `static/staff.js` rewrites the text
//! into the viewer's local time and keeps the UTC text as the tooltip. Without JavaScript the
//! page still reads correctly, in UTC.

use std::fmt;

/// A moment (Unix milliseconds) as staff pages show it. Renders as a `<time>` element in
/// templates (its Display output is HTML made only of digits and fixed text, so it is marked
/// safe) and serialises as its RFC 3339 text in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub i64);

impl Timestamp {
    fn utc(self) -> Option<time::OffsetDateTime> {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000).ok()
    }

    /// RFC 3339 UTC with exactly three decimals (`2026-12-06T18:20:05.250Z`): the one shape
    /// every browser's `Date` is required to parse, for the `datetime` attribute and JSON.
    pub fn iso(self) -> String {
        self.utc().map_or_else(
            || self.0.to_string(),
            |t| {
                format!(
                    "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                    t.year(),
                    u8::from(t.month()),
                    t.day(),
                    t.hour(),
                    t.minute(),
                    t.second(),
                    t.millisecond()
                )
            },
        )
    }

    /// Readable UTC to the minute: `2026-12-06 18:20 UTC`.
    pub fn utc_text(self) -> String {
        self.utc().map_or_else(
            || self.0.to_string(),
            |t| {
                format!(
                    "{:04}-{:02}-{:02} {:02}:{:02} UTC",
                    t.year(),
                    u8::from(t.month()),
                    t.day(),
                    t.hour(),
                    t.minute()
                )
            },
        )
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            r#"<time datetime="{}">{}</time>"#,
            self.iso(),
            self.utc_text()
        )
    }
}

/// Display writes only digits, `-`, `:`, `.`, `T`, `Z`, `UTC`, spaces and the fixed tags.
impl askama::filters::HtmlSafe for Timestamp {}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.iso())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use askama::Template;

    #[test]
    fn readable_utc_text_and_machine_readable_attribute() {
        // 2026-12-06 18:20:05.250 UTC
        let t = Timestamp(1_796_581_205_250);
        assert_eq!(t.utc_text(), "2026-12-06 18:20 UTC");
        assert_eq!(t.iso(), "2026-12-06T18:20:05.250Z");
        assert_eq!(
            t.to_string(),
            r#"<time datetime="2026-12-06T18:20:05.250Z">2026-12-06 18:20 UTC</time>"#
        );
        assert_eq!(
            serde_json::to_value(t).unwrap(),
            serde_json::json!("2026-12-06T18:20:05.250Z")
        );
    }

    #[derive(Template)]
    #[template(
        source = "<p>{{ at }}{% if let Some(t) = maybe %} {{ t }}{% endif %}</p>",
        ext = "html"
    )]
    struct Page {
        at: Timestamp,
        maybe: Option<Timestamp>,
    }

    #[test]
    fn templates_write_the_element_unescaped_also_through_a_reference() {
        let page = Page {
            at: Timestamp(0),
            maybe: Some(Timestamp(60_000)),
        };
        assert_eq!(
            page.render().unwrap(),
            "<p><time datetime=\"1970-01-01T00:00:00.000Z\">1970-01-01 00:00 UTC</time> \
             <time datetime=\"1970-01-01T00:01:00.000Z\">1970-01-01 00:01 UTC</time></p>"
        );
    }
}

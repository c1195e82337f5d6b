//! Text within a budget: event notes, test logs and messages are cut to a size the API server
//! (and a reader) accepts, keeping the end, where the cause usually is; and the one placeholder
//! syntax of Ship's own templates.

/// `template` with each `{name}` of `values` replaced by its value: the one placeholder syntax
/// of Ship's own templates (test and notification URLs: `{namespace}`, `{environment}`;
/// promotion tags: `{date}`, `{short}`). Manifests use Flux's `${name}` instead
/// (`ship_render::vars`), since `{...}` is YAML's flow mapping. A brace that names nothing in
/// `values` stays as written.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    values.iter().fold(template.to_owned(), |text, (name, value)| {
        text.replace(&format!("{{{name}}}"), value)
    })
}

/// The last `max` bytes of `text`, cut at a character boundary.
pub fn tail(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_replaces_each_named_placeholder_and_leaves_the_rest() {
        assert_eq!(
            fill(
                "release-{date}-{short}",
                &[("date", "2026-12-05"), ("short", "abc1234")]
            ),
            "release-2026-12-05-abc1234"
        );
        assert_eq!(
            fill(
                "http://{environment}.{namespace}/{environment}",
                &[("namespace", "ns"), ("environment", "main")]
            ),
            "http://main.ns/main"
        );
        assert_eq!(
            fill("{other} ${date} {date", &[("date", "d")]),
            "{other} $d {date"
        );
    }

    #[test]
    fn tail_keeps_the_end_at_a_char_boundary() {
        assert_eq!(tail("hello", 10), "hello");
        assert_eq!(tail("hello", 3), "llo");
        assert_eq!(tail("aé", 1), "");
        assert_eq!(tail("aéb", 2), "b");
    }
}

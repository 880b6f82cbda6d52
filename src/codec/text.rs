//! Text that came from the other side, made safe to print.

/// Text from the other side, safe to print on a terminal: control
/// characters (which could move the cursor, rewrite the screen or set the
/// window title) and invisible direction overrides are shown escaped.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let hidden = matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if c.is_control() || hidden {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

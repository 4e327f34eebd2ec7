//! Expression values and GitHub's coercion rules: truthiness, string and number conversion, loose
//! equality and ordering with case-insensitive strings, and the JSON shapes `toJSON` prints.
//! May use: nothing else of `expr`.

use std::cmp::Ordering;
use std::fmt::Write as _;

use indexmap::IndexMap;

/// The most bytes a string an expression builds (`format`, `join`, `toJSON`, a `${{ }}`
/// template) may take: far more than any workflow needs, far less than what doubling `format`
/// calls reach. Past it evaluation fails with an error instead of allocating.
pub const MAX_VALUE_BYTES: usize = 10 * 1024 * 1024;

/// A value an expression can produce or read from a context.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<Value>),
    Object(IndexMap<String, Value>),
}

impl Value {
    /// GitHub's truthiness: `false`, `0`, `-0`, `NaN`, `''` and `null` are falsy; everything else,
    /// including every array and object, is truthy.
    pub fn is_truthy(&self) -> bool {
        match self {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Number(n) => !(n.is_nan() || *n == 0.0),
            Value::String(s) => !s.is_empty(),
            Value::Array(_) | Value::Object(_) => true,
        }
    }

    /// The string conversion interpolation and the functions (`format`, `join`, `contains`, ...)
    /// apply: `null` → `""`, numbers as JavaScript prints them (`1.0` → `1`, `1e+21`), an array
    /// `Array` and an object `Object`, as GitHub's evaluator writes them (`toJSON` gives the JSON).
    pub fn to_scalar_string(&self) -> String {
        match self {
            Value::Null => String::new(),
            Value::Bool(true) => "true".to_owned(),
            Value::Bool(false) => "false".to_owned(),
            Value::Number(n) => format_number(*n),
            Value::String(s) => s.clone(),
            Value::Array(_) => "Array".to_owned(),
            Value::Object(_) => "Object".to_owned(),
        }
    }

    /// Number coercion: `null` → 0, booleans → 0/1, strings parsed as numbers (`''` → 0, anything
    /// unparsable → NaN), arrays and objects → NaN.
    pub fn to_number(&self) -> f64 {
        match self {
            Value::Null => 0.0,
            Value::Bool(b) => f64::from(u8::from(*b)),
            Value::Number(n) => *n,
            Value::String(s) => parse_number(s),
            Value::Array(_) | Value::Object(_) => f64::NAN,
        }
    }

    /// The name of the value's kind, as error messages print it.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }

    /// Case-insensitive property lookup, as GitHub does for every context and object key.
    /// An exact match wins over a case-folded one.
    pub fn get_property(&self, name: &str) -> Option<&Value> {
        match self {
            Value::Object(map) => lookup_key(map, name),
            _ => None,
        }
    }

    /// The value as JSON (numbers that are whole and in range become JSON integers).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Number(n) => number_to_json(*n),
            Value::String(s) => serde_json::Value::String(s.clone()),
            Value::Array(items) => {
                serde_json::Value::Array(items.iter().map(Value::to_json).collect())
            }
            Value::Object(map) => serde_json::Value::Object(
                map.iter()
                    .map(|(key, value)| (key.clone(), value.to_json()))
                    .collect(),
            ),
        }
    }

    /// The pretty JSON `toJSON` prints: two-space indent, `"key": value`, numbers as JavaScript's
    /// `JSON.stringify` prints them (NaN and the infinities as `null`), `[]` and `{}` when empty.
    pub fn to_pretty_json(&self) -> String {
        let mut out = String::new();
        write_pretty_json(self, 0, &mut out);
        out
    }
}

impl From<serde_json::Value> for Value {
    fn from(json: serde_json::Value) -> Self {
        match json {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::Number(n) => Value::Number(n.as_f64().unwrap_or(f64::NAN)),
            serde_json::Value::String(s) => Value::String(s),
            serde_json::Value::Array(items) => {
                Value::Array(items.into_iter().map(Value::from).collect())
            }
            serde_json::Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(key, value)| (key, Value::from(value)))
                    .collect(),
            ),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<f64> for Value {
    fn from(n: f64) -> Self {
        Value::Number(n)
    }
}

/// Case-insensitive key lookup in a map; an exact match wins over a case-folded one.
pub fn lookup_key<'a>(map: &'a IndexMap<String, Value>, name: &str) -> Option<&'a Value> {
    map.get(name).or_else(|| {
        map.iter()
            .find(|(key, _)| eq_ignore_case(key, name))
            .map(|(_, value)| value)
    })
}

/// Index of a key under case-insensitive lookup; an exact match wins.
pub fn lookup_key_index(map: &IndexMap<String, Value>, name: &str) -> Option<usize> {
    map.get_index_of(name)
        .or_else(|| map.keys().position(|key| eq_ignore_case(key, name)))
}

fn fold_char(c: char) -> char {
    // One-to-one upper-case mapping, as .NET's OrdinalIgnoreCase; characters whose upper case is
    // several characters (ß) compare as themselves.
    let mut upper = c.to_uppercase();
    match (upper.next(), upper.next()) {
        (Some(single), None) => single,
        _ => c,
    }
}

/// Case-insensitive string equality (ordinal after upper-casing each character).
pub fn eq_ignore_case(left: &str, right: &str) -> bool {
    left.len() == right.len() && left.eq_ignore_ascii_case(right)
        || left.chars().map(fold_char).eq(right.chars().map(fold_char))
}

/// Case-insensitive ordinal ordering of two strings.
pub fn cmp_ignore_case(left: &str, right: &str) -> Ordering {
    left.chars()
        .map(fold_char)
        .cmp(right.chars().map(fold_char))
}

/// Case-insensitive substring test.
pub fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    let haystack: Vec<char> = haystack.chars().map(fold_char).collect();
    let needle: Vec<char> = needle.chars().map(fold_char).collect();
    needle.is_empty()
        || haystack
            .windows(needle.len())
            .any(|window| window == needle.as_slice())
}

/// Case-insensitive prefix test.
pub fn starts_with_ignore_case(haystack: &str, needle: &str) -> bool {
    let mut haystack = haystack.chars().map(fold_char);
    needle
        .chars()
        .map(fold_char)
        .all(|c| haystack.next() == Some(c))
}

/// Case-insensitive suffix test.
pub fn ends_with_ignore_case(haystack: &str, needle: &str) -> bool {
    let mut haystack = haystack.chars().rev().map(fold_char);
    needle
        .chars()
        .rev()
        .map(fold_char)
        .all(|c| haystack.next() == Some(c))
}

/// Parses a string the way GitHub coerces it to a number (JavaScript's `Number(text)`): surrounding
/// whitespace ignored, `''` is 0, decimal with optional sign, fraction and exponent, `0x` hex, `0o`
/// octal, `0b` binary, `Infinity` with optional sign; anything else is NaN.
pub fn parse_number(text: &str) -> f64 {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return 0.0;
    }
    parse_number_literal(trimmed).unwrap_or(f64::NAN)
}

/// Parses the text of a number without surrounding whitespace; `None` when it is not one.
pub fn parse_number_literal(text: &str) -> Option<f64> {
    for (prefix, radix) in [
        ("0x", 16),
        ("0X", 16),
        ("0o", 8),
        ("0O", 8),
        ("0b", 2),
        ("0B", 2),
    ] {
        if let Some(digits) = text.strip_prefix(prefix) {
            // Like JavaScript, a radix prefix takes no sign.
            return parse_radix(digits, radix);
        }
    }
    let (negative, unsigned) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let magnitude = if unsigned == "Infinity" {
        f64::INFINITY
    } else if is_decimal(unsigned) {
        unsigned.parse::<f64>().ok()?
    } else {
        return None;
    };
    Some(if negative { -magnitude } else { magnitude })
}

fn parse_radix(digits: &str, radix: u32) -> Option<f64> {
    if digits.is_empty() {
        return None;
    }
    let mut result = 0.0_f64;
    for c in digits.chars() {
        result = result * f64::from(radix) + f64::from(c.to_digit(radix)?);
    }
    Some(result)
}

/// `digits [. [digits]] [e [+-] digits]` or `. digits [exponent]`; what Rust's float parser
/// accepts beyond this (`inf`, `nan`) JavaScript does not.
fn is_decimal(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut idx = 0;
    let count_digits = |from: usize| {
        bytes[from..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count()
    };
    let n_int = count_digits(idx);
    idx += n_int;
    let mut n_frac = 0;
    if bytes.get(idx) == Some(&b'.') {
        idx += 1;
        n_frac = count_digits(idx);
        idx += n_frac;
    }
    if n_int + n_frac == 0 {
        return false;
    }
    if matches!(bytes.get(idx), Some(b'e' | b'E')) {
        idx += 1;
        if matches!(bytes.get(idx), Some(b'+' | b'-')) {
            idx += 1;
        }
        let n_exp = count_digits(idx);
        if n_exp == 0 {
            return false;
        }
        idx += n_exp;
    }
    idx == bytes.len()
}

/// Formats a number as GitHub converts it to a string: rounded to at most 15 decimal places, then
/// printed as JavaScript does (`1.0` → `1`, `1e+21`, `1e-7`, `NaN`, `Infinity`).
pub fn format_number(number: f64) -> String {
    if number.is_finite() && number.abs() < 1e21 {
        // Limits precision the way GitHub does, so 0.1 + noise does not print 17 digits.
        let rounded: f64 = format!("{number:.15}").parse().unwrap_or(number);
        return js_number_to_string(rounded);
    }
    js_number_to_string(number)
}

/// JavaScript's `Number.prototype.toString()`: the shortest digits that round-trip, plain notation
/// from 1e-6 up to 1e21, exponent notation outside.
pub fn js_number_to_string(number: f64) -> String {
    if number.is_nan() {
        return "NaN".to_owned();
    }
    if number.is_infinite() {
        return if number > 0.0 {
            "Infinity"
        } else {
            "-Infinity"
        }
        .to_owned();
    }
    if number == 0.0 {
        return "0".to_owned();
    }
    let scientific = format!("{:e}", number.abs());
    let (mantissa, exponent) = scientific
        .split_once('e')
        .unwrap_or((scientific.as_str(), "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let exponent: i64 = exponent.parse().unwrap_or(0);
    let n_digits = digits.len() as i64;
    let point = exponent + 1; // position of the decimal point relative to the digits
    let mut out = String::new();
    if number < 0.0 {
        out.push('-');
    }
    if n_digits <= point && point <= 21 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (point - n_digits) as usize));
    } else if 0 < point && point <= 21 {
        out.push_str(&digits[..point as usize]);
        out.push('.');
        out.push_str(&digits[point as usize..]);
    } else if -6 < point && point <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-point) as usize));
        out.push_str(&digits);
    } else {
        out.push_str(&digits[..1]);
        if n_digits > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(
            out,
            "e{}{}",
            if point > 0 { '+' } else { '-' },
            (point - 1).abs()
        );
    }
    out
}

fn number_to_json(number: f64) -> serde_json::Value {
    const MAX_SAFE: f64 = 9_007_199_254_740_992.0;
    if number.fract() == 0.0 && number.abs() <= MAX_SAFE {
        // Range checked above, so the conversion is exact.
        serde_json::Value::from(number as i64)
    } else {
        serde_json::Number::from_f64(number)
            .map_or(serde_json::Value::Null, serde_json::Value::Number)
    }
}

fn write_pretty_json(value: &Value, depth: usize, out: &mut String) {
    let indent = |out: &mut String, depth: usize| out.extend(std::iter::repeat_n("  ", depth));
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        // As JSON.stringify: full precision, and no JSON spelling for NaN or the infinities.
        Value::Number(n) if n.is_finite() => out.push_str(&js_number_to_string(*n)),
        Value::Number(_) => out.push_str("null"),
        Value::String(s) => write_json_string(s, out),
        Value::Array(items) if items.is_empty() => out.push_str("[]"),
        Value::Object(map) if map.is_empty() => out.push_str("{}"),
        Value::Array(items) => {
            out.push_str("[\n");
            for (idx, item) in items.iter().enumerate() {
                indent(out, depth + 1);
                write_pretty_json(item, depth + 1, out);
                out.push_str(if idx + 1 < items.len() { ",\n" } else { "\n" });
            }
            indent(out, depth);
            out.push(']');
        }
        Value::Object(map) => {
            out.push_str("{\n");
            for (idx, (key, item)) in map.iter().enumerate() {
                indent(out, depth + 1);
                write_json_string(key, out);
                out.push_str(": ");
                write_pretty_json(item, depth + 1, out);
                out.push_str(if idx + 1 < map.len() { ",\n" } else { "\n" });
            }
            indent(out, depth);
            out.push('}');
        }
    }
}

fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Loose equality: same kinds compare directly (strings case-insensitively, numbers by IEEE so
/// NaN equals nothing); different kinds compare as numbers. Arrays and objects are equal only to
/// the same instance, which the evaluator decides; here they never are.
pub fn loose_equals(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(a), Value::Bool(b)) => a == b,
        (Value::Number(a), Value::Number(b)) => a == b,
        (Value::String(a), Value::String(b)) => eq_ignore_case(a, b),
        (Value::Array(_) | Value::Object(_), _) | (_, Value::Array(_) | Value::Object(_)) => false,
        _ => left.to_number() == right.to_number(),
    }
}

/// Loose ordering for `<`, `<=`, `>`, `>=`: strings case-insensitively when both are strings,
/// otherwise as numbers; `None` when either side is NaN (every relational test is then false).
pub fn loose_compare(left: &Value, right: &Value) -> Option<Ordering> {
    match (left, right) {
        (Value::String(a), Value::String(b)) => Some(cmp_ignore_case(a, b)),
        _ => left.to_number().partial_cmp(&right.to_number()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_as_javascript_prints_them() {
        let cases = [
            (1.0, "1"),
            (-0.0, "0"),
            (0.5, "0.5"),
            (123456789.125, "123456789.125"),
            (1e21, "1e+21"),
            (1.5e-7, "1.5e-7"),
            (0.000001, "0.000001"),
            (-1e100, "-1e+100"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Infinity"),
        ];
        for (number, expected) in cases {
            assert_eq!(format_number(number), expected, "{number:e}");
        }
    }

    #[test]
    fn number_strings_keep_at_most_fifteen_decimals() {
        assert_eq!(format_number(0.1 + 0.2), "0.3");
        assert_eq!(format_number(1e-16), "0");
        assert_eq!(js_number_to_string(0.1 + 0.2), "0.30000000000000004");
    }

    #[test]
    fn strings_coerce_to_numbers_like_javascript_number() {
        let cases = [
            ("", 0.0),
            (" \n", 0.0),
            (" 42 ", 42.0),
            ("-1.5e2", -150.0),
            ("0x1f", 31.0),
            ("0b101", 5.0),
            ("0o17", 15.0),
            ("-Infinity", f64::NEG_INFINITY),
            (".5", 0.5),
            ("5.", 5.0),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_number(text), expected, "{text:?}");
        }
        for not_a_number in ["abc", "inf", "nan", "-0x1", "1_000", "1e", "--1", "0x"] {
            assert!(parse_number(not_a_number).is_nan(), "{not_a_number:?}");
        }
    }

    #[test]
    fn case_folding_compares_non_ascii_letters() {
        assert!(eq_ignore_case("Straße", "STRAßE"));
        assert!(contains_ignore_case("Übermut", "BERM"));
        assert!(starts_with_ignore_case("Éclair", "éc"));
        assert!(ends_with_ignore_case("naïve", "ÏVE"));
        assert_eq!(cmp_ignore_case("apple", "BANANA"), Ordering::Less);
    }

    #[test]
    fn whole_numbers_become_json_integers() {
        assert_eq!(Value::Number(3.0).to_json(), serde_json::json!(3));
        assert_eq!(Value::Number(3.5).to_json(), serde_json::json!(3.5));
        assert_eq!(Value::Number(f64::NAN).to_json(), serde_json::Value::Null);
    }
}

//! Field validators shared by aggregates and request pre-checks. Each returns the
//! user-facing message on failure, phrased like API.md's examples.

/// JSON Schema for what [`required_text`] accepts (somewhat stricter: no tab or line
/// break, no surrounding space), for the OpenAPI document.
pub const LINE_PATTERN: &str = r"^[^\u0000-\u001F\u007F-\u009F\s]([^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u001F\u007F-\u009F\s])?$";

/// A required, trimmed text of at most `max` characters.
pub fn required_text(field: &str, value: &str, max: usize) -> Result<(), String> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(format!("The {field} field is required."));
    }
    optional_text(field, value, max)
}

/// A text of at most `max` characters, with no control characters.
pub fn optional_text(field: &str, value: &str, max: usize) -> Result<(), String> {
    if value.chars().count() > max {
        return Err(format!(
            "The {field} may not be greater than {max} characters."
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(format!("The {field} may not contain control characters."));
    }
    Ok(())
}

/// Lower-cases and trims an email address; validation is [`email`].
pub fn normalize_email(value: &str) -> String {
    value.trim().to_lowercase()
}

/// An email address of the common form: an RFC 5322 dot-atom local part (ASCII letters,
/// digits and ``!#$%&'*+/=?^_`{|}~-``, single dots between) of at most 64 characters, and
/// a host name of dotted letter-digit-hyphen labels. Quoted local parts, address
/// literals and non-ASCII addresses are refused.
pub fn email(value: &str) -> Result<(), String> {
    let message = || "The email must be a valid email address.".to_string();
    if value.is_empty() {
        return Err("The email field is required.".into());
    }
    if value.len() > 254 {
        return Err(message());
    }
    let Some((local, domain)) = value.split_once('@') else {
        return Err(message());
    };
    let atext = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~-".contains(&b);
    let local_ok = local.len() <= 64
        && local
            .split('.')
            .all(|atom| !atom.is_empty() && atom.bytes().all(atext));
    if !local_ok || !host_name(domain) {
        return Err(message());
    }
    Ok(())
}

/// Dotted labels of ASCII letters, digits and inner hyphens, at least two, at most 253
/// characters in all.
pub fn host_name(value: &str) -> bool {
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    value.len() <= 253 && value.contains('.') && value.split('.').all(label_ok)
}

/// JSON Schema for [`email`] (after trimming), for the OpenAPI document.
pub const EMAIL_PATTERN: &str = r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$";

/// A URL-safe slug: 3 to 63 of `a-z`, `0-9`, `-`, starting and ending alphanumeric.
pub fn slug(value: &str) -> Result<(), String> {
    let ok = (3..=63).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err("The slug must be 3 to 63 lowercase letters, digits or dashes, starting and ending with a letter or digit.".into())
    }
}

/// A slug derived from a display name (`"Acme Corp!"` → `"acme-corp"`), padded to 3 chars.
pub fn slugify(name: &str) -> String {
    let mut slug = String::new();
    for c in name.trim().chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
        if slug.len() >= 48 {
            break;
        }
    }
    let mut slug = slug.trim_end_matches('-').to_string();
    while slug.len() < 3 {
        slug.push('0');
    }
    slug
}

/// Turns a serde error at `path` into a field and a message.
pub fn field_error(path: &str, error: &serde_json::Error) -> (String, String) {
    let text = error.to_string();
    let text = text.split(" at line ").next().unwrap_or(&text).to_string();
    if let Some(field) = text
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
    {
        let field = if path == "." {
            field.to_string()
        } else {
            format!("{path}.{field}")
        };
        let message = format!("The {field} field is required.");
        return (field, message);
    }
    if let Some(field) = text
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next())
    {
        // serde_path_to_error's path already ends at the unknown key.
        let field = if path == "." {
            field.to_string()
        } else {
            path.to_string()
        };
        return (field, "This field is not accepted here.".into());
    }
    let field = if path == "." {
        "body".to_string()
    } else {
        path.to_string()
    };
    let message = if let Some(rest) = text.strip_prefix("invalid type: ") {
        let (got, expected) = rest
            .split_once(", expected ")
            .unwrap_or((rest, "another type"));
        format!("The {field} must be {expected}, not {got}.")
    } else if let Some(rest) = text.strip_prefix("unknown variant ") {
        let (got, expected) = rest
            .split_once(", expected ")
            .unwrap_or((rest, "a listed value"));
        format!("The {field} {got} is not one of {expected}.")
    } else {
        format!("The {field} is invalid: {text}.")
    };
    (field, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert!(email("a@b.co").is_ok());
        assert!(email("o'brien+tag@mail.example.com").is_ok());
        for bad in [
            "",
            "a",
            "a@b",
            "@b.co",
            "a@.co",
            "a b@c.co",
            "a@b..co",
            "a@b@c.co",
            "a..b@c.co",
            ".a@c.co",
            "a.@c.co",
            "é@c.co",
            "a@é.co",
            "a@-b.co",
            "\"a\"@c.co",
            "a\u{1}@c.co",
            &format!("{}@c.co", "a".repeat(65)),
        ] {
            assert!(email(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn slugs() {
        assert!(slug("acme-corp").is_ok());
        for bad in ["ab", "-ab", "ab-", "Acme", "a_b", &"a".repeat(64)] {
            assert!(slug(bad).is_err(), "{bad} should be refused");
        }
        assert_eq!(slugify("  Acme Corp!! "), "acme-corp");
        assert_eq!(slugify("Ü"), "000");
        assert!(slug(&slugify(&"Long name ".repeat(20))).is_ok());
    }

    #[test]
    fn text_limits() {
        assert!(required_text("name", "  ", 10).is_err());
        assert!(required_text("name", "abc", 2).is_err());
        assert!(optional_text("name", "a\u{0}b", 10).is_err());
        assert!(optional_text("name", "línea\nnext", 10).is_ok());
    }
}

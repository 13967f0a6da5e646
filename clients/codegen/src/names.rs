//! Case conversions shared by the back ends.

/// `create_group` -> `createGroup`; `CreateGroup` -> `createGroup`.
pub fn lower_camel(name: &str) -> String {
    let upper = upper_camel(name);
    let mut chars = upper.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `create_group` -> `CreateGroup`; `NOT_FOUND` -> `NotFound`.
pub fn upper_camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let all_caps = !name.chars().any(|c| c.is_ascii_lowercase());
    for part in name.split('_').filter(|p| !p.is_empty()) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.extend(first.to_uppercase());
            if all_caps {
                out.extend(chars.flat_map(char::to_lowercase));
            } else {
                out.extend(chars);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases() {
        assert_eq!(lower_camel("create_group"), "createGroup");
        assert_eq!(lower_camel("CreateGroup"), "createGroup");
        assert_eq!(upper_camel("NOT_FOUND"), "NotFound");
        assert_eq!(upper_camel("mark_read"), "MarkRead");
        assert_eq!(lower_camel("ping"), "ping");
    }
}

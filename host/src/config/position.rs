//! Where in the config file an error is: its line, its column and the key path of
//! what is there.

/// The line, from 1, of byte `offset` in `text`.
pub(super) fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The column (in characters, from 1) of byte `offset` on its line.
pub(super) fn column_of(text: &str, offset: usize) -> usize {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let start = text[..offset].rfind('\n').map_or(0, |newline| newline + 1);
    text[start..offset].chars().count() + 1
}

/// The key path of what is at byte `offset`, as the parser reads the document (a partial
/// one, when it does not parse): the deepest key whose name or value holds it, with an
/// array's items as `[i]`: `routes.orders.format`, `routes.a.dir[1]`, whether the
/// document says it with table headers, dotted keys or inline tables.
pub(super) fn key_at(text: &str, offset: usize) -> Option<String> {
    let (root, _) = toml::de::DeTable::parse_recoverable(text);
    let mut path = String::new();
    path_to(
        &toml::de::DeValue::Table(root.into_inner()),
        offset,
        &mut path,
    );
    (!path.is_empty()).then_some(path)
}

/// Appends to `path` the way down to `offset` inside `value`; whether it is there.
fn path_to(value: &toml::de::DeValue<'_>, offset: usize, path: &mut String) -> bool {
    let parent = path.len();
    match value {
        toml::de::DeValue::Table(table) => {
            for (key, value) in table.iter() {
                if !path.is_empty() {
                    path.push('.');
                }
                push_key(path, key.get_ref());
                if path_to(value.get_ref(), offset, path)
                    || key.span().contains(&offset)
                    || value.span().contains(&offset)
                {
                    return true;
                }
                path.truncate(parent);
            }
        }
        toml::de::DeValue::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                path.push_str(&format!("[{index}]"));
                if path_to(item.get_ref(), offset, path) || item.span().contains(&offset) {
                    return true;
                }
                path.truncate(parent);
            }
        }
        _ => {}
    }
    false
}

/// A key as TOML writes it: bare when it may be, quoted otherwise.
fn push_key(path: &mut String, key: &str) {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        path.push_str(key);
    } else {
        path.push_str(&format!("{key:?}"));
    }
}

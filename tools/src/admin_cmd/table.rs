//! Plain-text tables of JSON rows: one column per field, widths fitted to the content.

use serde_json::Value;

/// One column: its header and the JSON pointer of its value in a row.
pub type Column<'a> = (&'a str, &'a str);

/// A JSON value as a table cell: strings bare, null as `-`.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Renders `rows` under `columns`.
pub fn render(rows: &[Value], columns: &[Column<'_>]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            columns
                .iter()
                .map(|(_, ptr)| cell(row.pointer(ptr).unwrap_or(&Value::Null)))
                .collect()
        })
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, (h, _))| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([h.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |values: Vec<&str>| {
        let padded: Vec<String> = values
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    let mut out = vec![line(columns.iter().map(|(h, _)| *h).collect())];
    out.extend(
        cells
            .iter()
            .map(|r| line(r.iter().map(String::as_str).collect())),
    );
    out.join("\n")
}

/// Renders one object as `key: value` lines, in `fields` order.
pub fn render_fields(v: &Value, fields: &[Column<'_>]) -> String {
    let width = fields.iter().map(|(h, _)| h.len()).max().unwrap_or(0);
    fields
        .iter()
        .map(|(h, ptr)| {
            let value = cell(v.pointer(ptr).unwrap_or(&Value::Null));
            format!("{h:<width$}  {value}")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_fit_their_widest_cell() {
        let rows = vec![
            serde_json::json!({"a": "x", "b": {"c": 1}}),
            serde_json::json!({"a": "longer", "b": {"c": null}}),
        ];
        let text = render(&rows, &[("A", "/a"), ("C", "/b/c")]);
        assert_eq!(text, "A       C\nx       1\nlonger  -");
    }
}

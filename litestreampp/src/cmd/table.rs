//! Text tables laid out as Litestream's (Go's `tabwriter` with padding 2
//! and spaces): every column but the last is as wide as its widest cell
//! plus two spaces, so scripts that split Litestream's output on
//! whitespace, or cut its columns, read ours the same.

use std::fmt::Write as _;

/// Rows of cells, printed as one aligned block.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table whose first row is `header`.
    pub fn new(header: &[&str]) -> Table {
        Table {
            rows: vec![header.iter().map(|s| (*s).to_string()).collect()],
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The block, one line per row, each ending in a newline.
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            for (c, cell) in row.iter().enumerate() {
                if c + 1 == row.len() {
                    out.push_str(cell);
                } else {
                    let _ = write!(out, "{cell:<w$}", w = widths[c] + 2);
                }
            }
            out.push('\n');
        }
        out
    }

    pub fn print(&self) {
        print!("{}", self.render());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_the_widest_cell_plus_two() {
        let mut t = Table::new(&["path", "replica"]);
        t.row(vec!["/data/a.db".into(), "file".into()]);
        assert_eq!(t.render(), "path        replica\n/data/a.db  file\n");
    }
}

//! A small XML writer for the PPV facade's responses: elements and escaped text, indented
//! like the PPV API document's samples.

/// An XML document under construction.
pub struct Xml {
    out: String,
    open: Vec<&'static str>,
}

impl Xml {
    /// A document whose root element is `root`.
    pub fn new(root: &'static str) -> Self {
        let mut xml = Self {
            out: String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"),
            open: Vec::new(),
        };
        xml.open(root);
        xml
    }

    fn indent(&mut self) {
        for _ in 0..self.open.len() {
            self.out.push_str("  ");
        }
    }

    /// Opens `name`; close it with [`Xml::close`].
    pub fn open(&mut self, name: &'static str) -> &mut Self {
        self.indent();
        self.out.push('<');
        self.out.push_str(name);
        self.out.push_str(">\n");
        self.open.push(name);
        self
    }

    /// Closes the innermost open element.
    pub fn close(&mut self) -> &mut Self {
        if let Some(name) = self.open.pop() {
            self.indent();
            self.out.push_str("</");
            self.out.push_str(name);
            self.out.push_str(">\n");
        }
        self
    }

    /// `<name>text</name>`, or `<name/>` for empty text.
    pub fn leaf(&mut self, name: &str, text: &str) -> &mut Self {
        self.indent();
        if text.is_empty() {
            self.out.push('<');
            self.out.push_str(name);
            self.out.push_str("/>\n");
            return self;
        }
        self.out.push('<');
        self.out.push_str(name);
        self.out.push('>');
        for c in text.chars() {
            match c {
                '&' => self.out.push_str("&amp;"),
                '<' => self.out.push_str("&lt;"),
                '>' => self.out.push_str("&gt;"),
                '"' => self.out.push_str("&quot;"),
                '\'' => self.out.push_str("&apos;"),
                // Characters XML 1.0 cannot hold at all, escaped or not: one in a stored
                // value must not make the whole document unreadable.
                c if !allowed_in_xml(c) => self.out.push('\u{fffd}'),
                c => self.out.push(c),
            }
        }
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push_str(">\n");
        self
    }

    /// Closes every open element and returns the text.
    pub fn finish(mut self) -> String {
        while !self.open.is_empty() {
            self.close();
        }
        self.out
    }
}

/// Whether XML 1.0 allows `c` in text (its `Char` production).
fn allowed_in_xml(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | ' '..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_escaped_and_empty() {
        let mut xml = Xml::new("Response");
        xml.open("Items")
            .open("Item")
            .leaf("Name", "a<b & \"c\"")
            .leaf("Email", "")
            .close()
            .close();
        xml.leaf("Status", "Success");
        assert_eq!(
            xml.finish(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response>\n  <Items>\n    <Item>\n      <Name>a&lt;b &amp; &quot;c&quot;</Name>\n      <Email/>\n    </Item>\n  </Items>\n  <Status>Success</Status>\n</Response>\n"
        );
    }

    #[test]
    fn characters_xml_cannot_hold_are_replaced() {
        let mut xml = Xml::new("R");
        xml.leaf("Name", "a\u{1}b\u{0}c\u{fffe}d\te\u{1f600}");
        assert!(xml
            .finish()
            .contains("<Name>a\u{fffd}b\u{fffd}c\u{fffd}d\te\u{1f600}</Name>"),);
    }
}

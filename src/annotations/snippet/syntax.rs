//! nginx's directive syntax, tokenized and parsed into a tree of [`Directive`]s: words (bare or
//! quoted, with nginx's escapes), `;`, blocks in braces, `#` comments. Nothing here knows what a
//! directive means; [`super::program`] gives the tree its types. Bounded: the text, the number
//! of directives and the nesting depth are limited, so any input parses in linear time.

/// The longest snippet read (bytes).
pub const MAX_LEN: usize = 64 * 1024;
/// The most directives in one snippet (blocks included).
pub const MAX_DIRECTIVES: usize = 1000;
/// Blocks in blocks: `location { if { } }` is depth 2.
pub const MAX_DEPTH: usize = 3;

/// One word of a directive, escapes resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    pub text: String,
    /// Written in quotes (a quoted word is never syntax, whatever it holds).
    pub quoted: bool,
}

/// `name arg...;` or `name arg... { directives }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub name: String,
    pub args: Vec<Word>,
    pub block: Option<Vec<Directive>>,
    /// 1-based line of the directive's name in the snippet.
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Tok {
    Word(Word),
    Semi,
    Open,
    Close,
}

fn err<T>(line: usize, message: impl Into<String>) -> Result<T, SyntaxError> {
    Err(SyntaxError {
        line,
        message: message.into(),
    })
}

/// Tokens with their lines.
fn tokenize(src: &str) -> Result<Vec<(Tok, usize)>, SyntaxError> {
    if src.len() > MAX_LEN {
        return err(1, format!("longer than {MAX_LEN} bytes"));
    }
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line = 1;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\n' => {
                line += 1;
                i += 1;
            }
            c if c.is_whitespace() => i += 1,
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            ';' => {
                out.push((Tok::Semi, line));
                i += 1;
            }
            '{' => {
                out.push((Tok::Open, line));
                i += 1;
            }
            '}' => {
                out.push((Tok::Close, line));
                i += 1;
            }
            '"' | '\'' => {
                let start = line;
                let quote = c;
                i += 1;
                let mut text = String::new();
                loop {
                    let Some(&ch) = chars.get(i) else {
                        return err(start, format!("unclosed {quote} quote"));
                    };
                    i += 1;
                    match ch {
                        '\\' => match chars.get(i) {
                            Some(&n) => {
                                i += 1;
                                push_escape(&mut text, n);
                                if n == '\n' {
                                    line += 1;
                                }
                            }
                            None => return err(start, format!("unclosed {quote} quote")),
                        },
                        ch if ch == quote => break,
                        ch => {
                            if ch == '\n' {
                                line += 1;
                            }
                            text.push(ch);
                        }
                    }
                }
                // nginx: a quoted word ends at a space, `;`, `{` or `)`
                if let Some(&n) = chars.get(i) {
                    if !(n.is_whitespace() || matches!(n, ';' | '{' | ')' | '}')) {
                        return err(line, format!("unexpected {n:?} after a quoted string"));
                    }
                }
                out.push((Tok::Word(Word { text, quoted: true }), start));
            }
            _ => {
                let mut text = String::new();
                while let Some(&ch) = chars.get(i) {
                    if ch.is_whitespace() || matches!(ch, ';' | '}' | '"' | '\'') {
                        break;
                    }
                    if ch == '{' {
                        // `${name}` is a variable, not a block
                        if text.ends_with('$') {
                            while let Some(&v) = chars.get(i) {
                                text.push(v);
                                i += 1;
                                if v == '}' {
                                    break;
                                }
                                if v == '\n' || v == ';' {
                                    return err(line, "unclosed ${ in a variable name");
                                }
                            }
                            continue;
                        }
                        break;
                    }
                    i += 1;
                    if ch == '\\' {
                        match chars.get(i) {
                            Some(&n) if n != '\n' => {
                                i += 1;
                                push_escape(&mut text, n);
                            }
                            _ => text.push('\\'),
                        }
                        continue;
                    }
                    text.push(ch);
                }
                out.push((
                    Tok::Word(Word {
                        text,
                        quoted: false,
                    }),
                    line,
                ));
            }
        }
    }
    Ok(out)
}

/// nginx's escapes: `\"`, `\'`, `\\` give the character; `\t`, `\r`, `\n` the control
/// character; any other backslash stays.
fn push_escape(text: &mut String, n: char) {
    match n {
        '"' | '\'' | '\\' => text.push(n),
        't' => text.push('\t'),
        'r' => text.push('\r'),
        'n' => text.push('\n'),
        n => {
            text.push('\\');
            text.push(n);
        }
    }
}

/// Parse a snippet into its directives.
pub fn parse(src: &str) -> Result<Vec<Directive>, SyntaxError> {
    let toks = tokenize(src)?;
    let mut pos = 0;
    let mut count = 0;
    let out = block(&toks, &mut pos, 0, &mut count)?;
    if let Some((_, line)) = toks.get(pos) {
        return err(*line, "unexpected }");
    }
    Ok(out)
}

fn block(
    toks: &[(Tok, usize)],
    pos: &mut usize,
    depth: usize,
    count: &mut usize,
) -> Result<Vec<Directive>, SyntaxError> {
    let mut out = Vec::new();
    loop {
        let Some((tok, line)) = toks.get(*pos) else {
            return Ok(out);
        };
        let line = *line;
        let name = match tok {
            Tok::Close => return Ok(out),
            Tok::Semi => return err(line, "unexpected ;"),
            Tok::Open => return err(line, "unexpected {"),
            Tok::Word(w) => w.text.clone(),
        };
        *count += 1;
        if *count > MAX_DIRECTIVES {
            return err(line, format!("more than {MAX_DIRECTIVES} directives"));
        }
        *pos += 1;
        let mut args = Vec::new();
        loop {
            match toks.get(*pos) {
                // the snippet's last directive without its `;`: ingress-nginx pastes the text
                // into nginx.conf where its e2e tests show it working, so the end of the text
                // ends the directive (only at the top level; an open block is still an error)
                None if depth == 0 => {
                    out.push(Directive {
                        name,
                        args,
                        block: None,
                        line,
                    });
                    return Ok(out);
                }
                None => return err(line, format!("{name}: unexpected end, expecting ; or {{")),
                Some((Tok::Word(w), _)) => {
                    args.push(w.clone());
                    *pos += 1;
                }
                Some((Tok::Semi, _)) => {
                    *pos += 1;
                    out.push(Directive {
                        name,
                        args,
                        block: None,
                        line,
                    });
                    break;
                }
                Some((Tok::Open, l)) => {
                    if depth >= MAX_DEPTH {
                        return err(*l, format!("blocks nested deeper than {MAX_DEPTH}"));
                    }
                    *pos += 1;
                    let inner = block(toks, pos, depth + 1, count)?;
                    match toks.get(*pos) {
                        Some((Tok::Close, _)) => *pos += 1,
                        _ => return err(line, format!("{name}: unclosed {{")),
                    }
                    out.push(Directive {
                        name,
                        args,
                        block: Some(inner),
                        line,
                    });
                    break;
                }
                Some((Tok::Close, l)) => {
                    return err(*l, format!("{name}: unexpected }}, expecting ;"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(d: &Directive) -> Vec<&str> {
        d.args.iter().map(|w| w.text.as_str()).collect()
    }

    #[test]
    fn directives_quotes_comments_and_lines() {
        let src = "# a comment\nmore_set_headers \"X-A: b c\" 'Y: \\'q\\''; # tail\n  add_header X $host always;";
        let d = parse(src).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].name, "more_set_headers");
        assert_eq!(words(&d[0]), ["X-A: b c", "Y: 'q'"]);
        assert!(d[0].args[0].quoted);
        assert_eq!(d[0].line, 2);
        assert_eq!(d[1].name, "add_header");
        assert_eq!(words(&d[1]), ["X", "$host", "always"]);
        assert_eq!(d[1].line, 3);
    }

    #[test]
    fn blocks_and_if_words() {
        let d = parse("if ($http_x = \"a b\") {\n return 403;\n}\nset ${v} 1;").unwrap();
        assert_eq!(d[0].name, "if");
        assert_eq!(words(&d[0]), ["($http_x", "=", "a b", ")"]);
        let inner = d[0].block.as_ref().unwrap();
        assert_eq!(inner[0].name, "return");
        assert_eq!(inner[0].line, 2);
        assert_eq!(words(&d[1]), ["${v}", "1"]);
    }

    #[test]
    fn escapes_as_nginx() {
        let d = parse(r#"return 200 "a\nb\"c\d";"#).unwrap();
        assert_eq!(d[0].args[1].text, "a\nb\"c\\d");
        let d = parse(r"rewrite ^/a\.b /c break;").unwrap();
        assert_eq!(d[0].args[0].text, r"^/a\.b");
    }

    #[test]
    fn injection_stays_in_values() {
        // `;` and `}` inside quotes are text, not syntax
        let d = parse("more_set_headers \"X: a; } server { listen 1\";").unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].args[0].text, "X: a; } server { listen 1");
    }

    #[test]
    fn errors_name_the_line() {
        // a missing `;` at the very end is accepted (ingress-nginx serves it)
        let d = parse("add_header X y;\nadd_header Z w").unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(words(&d[1]), ["Z", "w"]);
        let e = parse("if ($a) {\n add_header Z w").unwrap_err();
        assert!(e.message.contains("expecting ;"), "{e}");
        assert_eq!(parse("a;\n}").unwrap_err().line, 2);
        assert!(parse("if ($a) {\n return 1;").is_err());
        assert!(parse("return \"x").is_err());
        assert!(parse("a \"b\"c;").is_err());
        assert!(parse("a { b { c { d { e; } } } }").is_err());
        assert!(parse(&"a;".repeat(MAX_DIRECTIVES + 1)).is_err());
        assert!(parse(&"a".repeat(MAX_LEN + 1)).is_err());
        assert!(parse("set ${v 1;").is_err());
    }

    #[test]
    fn empty_and_comment_only() {
        assert!(parse("").unwrap().is_empty());
        assert!(parse("# only\n\n").unwrap().is_empty());
    }
}

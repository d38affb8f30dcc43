//! Parser for MLflow's search-filter grammar and `order_by` clauses.
//!
//! [`parse_filter`] turns a string such as
//! ``metrics.acc > 0.5 AND tags.`mlflow.runName` LIKE 'bc-%'`` into an [`Expr`]
//! tree that the store translates to SQL; [`parse_order_by`] parses one
//! `identifier [ASC|DESC]` clause. The grammar is MLflow's, extended with `OR`
//! and parentheses (`AND` binds tighter than `OR`):
//!
//! ```text
//! expression := term (OR term)*
//! term       := factor (AND factor)*
//! factor     := '(' expression ')' | comparison
//! comparison := identifier comparator value | identifier IS [NOT] NULL
//! comparator := = | != | <> | > | >= | < | <= | [NOT] LIKE | [NOT] ILIKE | [NOT] IN
//! ```
//!
//! The parser is purely syntactic: it does not know which attributes exist or
//! which value types a given entity accepts (a number compared with a param is
//! returned as [`Value::Number`]); the store validates that, e.g. by walking
//! [`Expr::comparisons`]. The only semantic checks made here are that `LIKE`
//! patterns are strings and `IN` lists are non-empty. Every failure is a
//! [`keel_core::Error::invalid_parameter`] naming the offending text and its
//! (character) position; no input makes the parser panic.

use std::fmt;

use keel_core::Error;

/// Deepest parenthesis nesting accepted, so hostile input cannot exhaust the stack.
const MAX_DEPTH: usize = 100;

/// Words that cannot be used as a bare (unquoted, unprefixed) identifier.
const RESERVED: &[&str] = &["AND", "OR", "NOT", "IN", "IS", "LIKE", "ILIKE", "NULL"];

/// Which family of run/model fields an identifier refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntityKind {
    Metric,
    Param,
    Tag,
    Attribute,
    Dataset,
}

impl EntityKind {
    /// Canonical prefix used when rendering an identifier (`metrics`, `params`, ...).
    pub fn prefix(self) -> &'static str {
        match self {
            EntityKind::Metric => "metrics",
            EntityKind::Param => "params",
            EntityKind::Tag => "tags",
            EntityKind::Attribute => "attributes",
            EntityKind::Dataset => "datasets",
        }
    }

    /// The kind named by an identifier prefix (case-insensitive), if any.
    pub fn from_prefix(prefix: &str) -> Option<EntityKind> {
        let p = prefix.to_ascii_lowercase();
        Some(match p.as_str() {
            "metric" | "metrics" => EntityKind::Metric,
            "param" | "params" | "parameter" | "parameters" => EntityKind::Param,
            "tag" | "tags" => EntityKind::Tag,
            "attribute" | "attributes" | "attr" | "run" => EntityKind::Attribute,
            "dataset" | "datasets" => EntityKind::Dataset,
            _ => return None,
        })
    }
}

/// A field reference: `metrics.acc`, ``tags.`mlflow.runName` ``, `name`, ...
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identifier {
    pub kind: EntityKind,
    /// The key with any quoting removed (`mlflow.runName`, `my metric`).
    pub key: String,
}

/// Comparison operator. `<>` parses as [`Comparator::Ne`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Comparator {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Like,
    ILike,
    NotLike,
    NotILike,
    In,
    NotIn,
    IsNull,
    IsNotNull,
}

impl Comparator {
    /// The operator as written in a filter (canonical spelling), for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Comparator::Eq => "=",
            Comparator::Ne => "!=",
            Comparator::Gt => ">",
            Comparator::Ge => ">=",
            Comparator::Lt => "<",
            Comparator::Le => "<=",
            Comparator::Like => "LIKE",
            Comparator::ILike => "ILIKE",
            Comparator::NotLike => "NOT LIKE",
            Comparator::NotILike => "NOT ILIKE",
            Comparator::In => "IN",
            Comparator::NotIn => "NOT IN",
            Comparator::IsNull => "IS NULL",
            Comparator::IsNotNull => "IS NOT NULL",
        }
    }

    fn is_like(self) -> bool {
        matches!(
            self,
            Comparator::Like | Comparator::ILike | Comparator::NotLike | Comparator::NotILike
        )
    }
}

impl fmt::Display for Comparator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Right-hand side of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// An unquoted numeric literal (always finite).
    Number(f64),
    /// A single- or double-quoted literal, unescaped.
    String(String),
    /// The non-empty list of an `IN` / `NOT IN`; its items are `Number` or `String`.
    List(Vec<Value>),
    /// No value: only for `IS NULL` / `IS NOT NULL`.
    None,
}

/// One leaf of a filter: `ident op value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub ident: Identifier,
    pub op: Comparator,
    pub value: Value,
}

/// A parsed filter. `And`/`Or` hold at least two children and never directly
/// contain a node of their own kind (nesting is flattened).
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Cmp(Comparison),
}

impl Expr {
    /// Every comparison in the tree, left to right.
    pub fn comparisons(&self) -> Vec<&Comparison> {
        let mut out = Vec::new();
        self.collect(&mut out);
        out
    }

    fn collect<'a>(&'a self, out: &mut Vec<&'a Comparison>) {
        match self {
            Expr::And(items) | Expr::Or(items) => items.iter().for_each(|e| e.collect(out)),
            Expr::Cmp(c) => out.push(c),
        }
    }
}

/// One parsed `order_by` clause.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderBy {
    pub ident: Identifier,
    pub ascending: bool,
}

// Rendering back to filter syntax: parsing the output yields the same tree.

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let q = if self.key.contains('`') { '"' } else { '`' };
        write!(f, "{}.{q}{}{q}", self.kind.prefix(), self.key)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Number(n) => write!(f, "{n}"),
            Value::String(s) => write!(f, "'{}'", s.replace('\\', "\\\\").replace('\'', "''")),
            Value::List(items) => {
                f.write_str("(")?;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str(")")
            }
            Value::None => Ok(()),
        }
    }
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.op {
            Comparator::IsNull | Comparator::IsNotNull => write!(f, "{} {}", self.ident, self.op),
            _ => write!(f, "{} {} {}", self.ident, self.op, self.value),
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (items, sep) = match self {
            Expr::Cmp(c) => return write!(f, "{c}"),
            Expr::And(items) => (items, " AND "),
            Expr::Or(items) => (items, " OR "),
        };
        for (i, e) in items.iter().enumerate() {
            if i > 0 {
                f.write_str(sep)?;
            }
            match e {
                Expr::Cmp(c) => write!(f, "{c}")?,
                _ => write!(f, "({e})")?,
            }
        }
        Ok(())
    }
}

/// Parses an MLflow search filter. Empty or whitespace-only input means "no filter".
pub fn parse_filter(input: &str) -> Result<Option<Expr>, Error> {
    parse_filter_located(input).map_err(|(error, _)| error)
}

/// [`parse_filter`], also giving the character position of a syntax error
/// (what a form shows under the text the user typed).
pub fn parse_filter_located(input: &str) -> Result<Option<Expr>, (Error, Option<usize>)> {
    use keel_core::validation::{MAX_FILTER_BYTES, MAX_FILTER_COMPARISONS, MAX_FILTER_LIST_VALUES};
    if input.trim().is_empty() {
        return Ok(None);
    }
    if input.len() > MAX_FILTER_BYTES {
        return Err((
            Error::invalid_parameter(format!(
                "Invalid filter: it is {} bytes long; at most {MAX_FILTER_BYTES} are accepted",
                input.len()
            )),
            None,
        ));
    }
    let mut p = Parser::new(input, "filter");
    let parsed = p.parse_expr().and_then(|expr| {
        p.skip_ws();
        if p.at_end() {
            Ok(expr)
        } else {
            Err(p.expected(p.pos, "AND, OR or the end of the filter"))
        }
    });
    let expr = parsed.map_err(|error| (error, p.failed_at.get()))?;
    let comparisons = expr.comparisons();
    let values: usize = comparisons
        .iter()
        .map(|c| match &c.value {
            Value::List(items) => items.len(),
            _ => 0,
        })
        .sum();
    let refuse = |what: String| {
        Err((
            Error::invalid_parameter(format!("Invalid filter: {what}")),
            None,
        ))
    };
    if comparisons.len() > MAX_FILTER_COMPARISONS {
        return refuse(format!(
            "it has {} comparisons; at most {MAX_FILTER_COMPARISONS} are accepted",
            comparisons.len()
        ));
    }
    if values > MAX_FILTER_LIST_VALUES {
        return refuse(format!(
            "its IN lists hold {values} values; at most {MAX_FILTER_LIST_VALUES} are accepted"
        ));
    }
    Ok(Some(expr))
}

/// Parses one `order_by` clause: `identifier [ASC|DESC]`, ascending by default.
pub fn parse_order_by(input: &str) -> Result<OrderBy, Error> {
    let mut p = Parser::new(input, "order_by clause");
    p.skip_ws();
    if p.at_end() {
        return Err(Error::invalid_parameter(format!(
            "Invalid order_by clause '{input}': it is empty; expected an identifier optionally followed by ASC or DESC"
        )));
    }
    let ident = p.parse_identifier()?;
    p.skip_ws();
    let (ascending, explicit) = if p.eat_keyword("DESC") {
        (false, true)
    } else {
        (true, p.eat_keyword("ASC"))
    };
    p.skip_ws();
    if !p.at_end() {
        let what = if explicit {
            "the end of the clause"
        } else {
            "ASC, DESC or the end of the clause"
        };
        return Err(p.expected(p.pos, what));
    }
    Ok(OrderBy { ident, ascending })
}

/// Characters allowed in an unquoted identifier or key.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '/' | ':')
}

/// Joins `items` under `And` (or `Or`), splicing children of the same kind.
fn join(items: Vec<Expr>, or: bool) -> Expr {
    let mut out = Vec::with_capacity(items.len());
    for e in items {
        match e {
            Expr::Or(v) if or => out.extend(v),
            Expr::And(v) if !or => out.extend(v),
            other => out.push(other),
        }
    }
    if out.len() == 1
        && let Some(only) = out.pop()
    {
        return only;
    }
    if or { Expr::Or(out) } else { Expr::And(out) }
}

/// Recursive-descent parser over the raw text; `pos` is a byte offset that
/// always sits on a char boundary.
struct Parser<'a> {
    src: &'a str,
    pos: usize,
    /// "filter" or "order_by clause", for messages.
    what: &'static str,
    depth: usize,
    /// Character position of the first error reported, if any.
    failed_at: std::cell::Cell<Option<usize>>,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str, what: &'static str) -> Self {
        Parser {
            src,
            pos: 0,
            what,
            depth: 0,
            failed_at: std::cell::Cell::new(None),
        }
    }

    fn rest(&self) -> &'a str {
        self.src.get(self.pos..).unwrap_or("")
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn at_end(&self) -> bool {
        self.pos >= self.src.len()
    }

    fn skip_ws(&mut self) {
        while let Some(c) = self.peek()
            && c.is_whitespace()
        {
            self.pos += c.len_utf8();
        }
    }

    /// The unquoted word starting at the cursor (possibly empty), not consumed.
    fn peek_word(&self) -> &'a str {
        let rest = self.rest();
        let end = rest.find(|c: char| !is_word_char(c)).unwrap_or(rest.len());
        &rest[..end]
    }

    /// Consumes `kw` (case-insensitive) if it is the whole word at the cursor.
    fn eat_keyword(&mut self, kw: &str) -> bool {
        let word = self.peek_word();
        if word.eq_ignore_ascii_case(kw) {
            self.pos += word.len();
            true
        } else {
            false
        }
    }

    /// Character (not byte) position of byte offset `at`, as users count.
    fn char_pos(&self, at: usize) -> usize {
        self.src.get(..at).map_or(0, |s| s.chars().count())
    }

    /// "Invalid <what> '<input>': <msg> at position <n><tail>".
    fn fail(&self, at: usize, msg: impl fmt::Display, tail: impl fmt::Display) -> Error {
        if self.failed_at.get().is_none() {
            self.failed_at.set(Some(self.char_pos(at)));
        }
        Error::invalid_parameter(format!(
            "Invalid {} '{}': {msg} at position {}{tail}",
            self.what,
            self.src,
            self.char_pos(at)
        ))
    }

    fn error_at(&self, at: usize, msg: impl fmt::Display) -> Error {
        self.fail(at, msg, "")
    }

    /// A short quote of the text at byte offset `at`, or "end of input".
    fn found(&self, at: usize) -> String {
        let rest = self.src.get(at..).unwrap_or("");
        if rest.is_empty() {
            return "end of input".to_string();
        }
        let token: String = rest
            .chars()
            .take_while(|c| !c.is_whitespace())
            .take(21)
            .collect();
        if token.chars().count() > 20 {
            format!("'{}...'", token.chars().take(20).collect::<String>())
        } else {
            format!("'{token}'")
        }
    }

    /// "expected X at position N" plus ", found '...'" when not at the end.
    fn expected(&self, at: usize, what: impl fmt::Display) -> Error {
        self.expected_with(at, what, self.found(at), "")
    }

    /// Like [`Parser::expected`] with a custom description of what was found
    /// and a `note` appended to the message.
    fn expected_with(
        &self,
        at: usize,
        what: impl fmt::Display,
        found: String,
        note: &str,
    ) -> Error {
        if at >= self.src.len() {
            self.fail(at, format_args!("expected {what}"), note)
        } else {
            self.fail(
                at,
                format_args!("expected {what}"),
                format_args!(", found {found}{note}"),
            )
        }
    }

    fn parse_expr(&mut self) -> Result<Expr, Error> {
        let mut terms = vec![self.parse_term()?];
        loop {
            self.skip_ws();
            if !self.eat_keyword("OR") {
                break;
            }
            terms.push(self.parse_term()?);
        }
        Ok(join(terms, true))
    }

    fn parse_term(&mut self) -> Result<Expr, Error> {
        let mut factors = vec![self.parse_factor()?];
        loop {
            self.skip_ws();
            if !self.eat_keyword("AND") {
                break;
            }
            factors.push(self.parse_factor()?);
        }
        Ok(join(factors, false))
    }

    fn parse_factor(&mut self) -> Result<Expr, Error> {
        self.skip_ws();
        if self.peek() != Some('(') {
            return Ok(Expr::Cmp(self.parse_comparison()?));
        }
        let open = self.pos;
        if self.depth >= MAX_DEPTH {
            return Err(self.error_at(
                open,
                format!("parentheses nest deeper than {MAX_DEPTH} levels"),
            ));
        }
        self.bump();
        self.depth += 1;
        let inner = self.parse_expr()?;
        self.depth -= 1;
        self.skip_ws();
        if self.peek() != Some(')') {
            let note = format!(
                "; the '(' at position {} is not closed",
                self.char_pos(open)
            );
            return Err(self.expected_with(
                self.pos,
                "AND, OR or ')'",
                self.found(self.pos),
                &note,
            ));
        }
        self.bump();
        Ok(inner)
    }

    fn parse_comparison(&mut self) -> Result<Comparison, Error> {
        self.skip_ws();
        let start = self.pos;
        let ident = self.parse_identifier()?;
        let ident_text = self.src.get(start..self.pos).unwrap_or("");
        let op = self.parse_comparator(ident_text)?;
        let value = match op {
            Comparator::IsNull | Comparator::IsNotNull => Value::None,
            Comparator::In | Comparator::NotIn => self.parse_list(op)?,
            _ => {
                self.skip_ws();
                let at = self.pos;
                let value = self.parse_scalar(op.as_str())?;
                if op.is_like() && !matches!(value, Value::String(_)) {
                    return Err(self.error_at(at, format!("{op} requires a quoted string pattern")));
                }
                value
            }
        };
        Ok(Comparison { ident, op, value })
    }

    fn parse_identifier(&mut self) -> Result<Identifier, Error> {
        self.skip_ws();
        let start = self.pos;
        match self.peek() {
            Some(q @ ('`' | '"')) => {
                let key = self.scan_quoted_key(q)?;
                Ok(Identifier {
                    kind: EntityKind::Attribute,
                    key,
                })
            }
            Some(c) if c.is_alphabetic() || c == '_' => {
                let word = self.peek_word();
                self.pos += word.len();
                let Some((prefix, rest)) = word.split_once('.') else {
                    if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(word)) {
                        return Err(self.expected_with(
                            start,
                            "an identifier",
                            format!("the keyword '{word}'"),
                            " (quote a name with backticks)",
                        ));
                    }
                    return Ok(Identifier {
                        kind: EntityKind::Attribute,
                        key: word.to_string(),
                    });
                };
                let Some(kind) = EntityKind::from_prefix(prefix) else {
                    return Err(self.fail(
                        start,
                        format_args!("invalid entity type '{prefix}' in '{word}'"),
                        "; valid prefixes are metrics, params, tags, attributes and datasets",
                    ));
                };
                if !rest.is_empty() {
                    return Ok(Identifier {
                        kind,
                        key: rest.to_string(),
                    });
                }
                match self.peek() {
                    Some(q @ ('`' | '"')) => Ok(Identifier {
                        kind,
                        key: self.scan_quoted_key(q)?,
                    }),
                    _ => Err(self.expected(self.pos, format_args!("a key after '{word}'"))),
                }
            }
            _ => Err(self.expected(
                start,
                "an identifier (metrics.<key>, params.<key>, tags.<key>, an attribute name) or '('",
            )),
        }
    }

    /// A backtick- or double-quoted name; the cursor is on the opening quote.
    fn scan_quoted_key(&mut self, q: char) -> Result<String, Error> {
        let open = self.pos;
        self.bump();
        let body = self.rest();
        let Some(len) = body.find(q) else {
            return Err(self.error_at(open, format!("unterminated quoted name starting with {q}")));
        };
        if len == 0 {
            return Err(self.error_at(open, "empty quoted name"));
        }
        self.pos += len + q.len_utf8();
        Ok(body[..len].to_string())
    }

    fn parse_comparator(&mut self, ident_text: &str) -> Result<Comparator, Error> {
        self.skip_ws();
        let at = self.pos;
        const SYMBOLS: [(&str, Comparator); 7] = [
            ("!=", Comparator::Ne),
            ("<>", Comparator::Ne),
            (">=", Comparator::Ge),
            ("<=", Comparator::Le),
            ("=", Comparator::Eq),
            (">", Comparator::Gt),
            ("<", Comparator::Lt),
        ];
        for (sym, op) in SYMBOLS {
            if self.rest().starts_with(sym) {
                self.pos += sym.len();
                return Ok(op);
            }
        }
        if self.eat_keyword("LIKE") {
            return Ok(Comparator::Like);
        }
        if self.eat_keyword("ILIKE") {
            return Ok(Comparator::ILike);
        }
        if self.eat_keyword("IN") {
            return Ok(Comparator::In);
        }
        if self.eat_keyword("NOT") {
            self.skip_ws();
            if self.eat_keyword("LIKE") {
                return Ok(Comparator::NotLike);
            }
            if self.eat_keyword("ILIKE") {
                return Ok(Comparator::NotILike);
            }
            if self.eat_keyword("IN") {
                return Ok(Comparator::NotIn);
            }
            return Err(self.expected(self.pos, "LIKE, ILIKE or IN after NOT"));
        }
        if self.eat_keyword("IS") {
            self.skip_ws();
            let negated = self.eat_keyword("NOT");
            self.skip_ws();
            if self.eat_keyword("NULL") {
                return Ok(if negated {
                    Comparator::IsNotNull
                } else {
                    Comparator::IsNull
                });
            }
            let after = if negated { "IS NOT" } else { "IS" };
            return Err(self.expected(self.pos, format_args!("NULL after {after}")));
        }
        Err(self.expected(
            at,
            format_args!(
                "a comparator (=, !=, >, >=, <, <=, LIKE, ILIKE, IN, NOT IN, IS NULL) after '{ident_text}'"
            ),
        ))
    }

    /// `( value [, value]* )` for IN / NOT IN.
    fn parse_list(&mut self, op: Comparator) -> Result<Value, Error> {
        self.skip_ws();
        let open = self.pos;
        if self.peek() != Some('(') {
            return Err(self.expected(
                open,
                format_args!("a parenthesized list of values after '{op}'"),
            ));
        }
        self.bump();
        self.skip_ws();
        if self.peek() == Some(')') {
            return Err(self.error_at(open, format!("{op} requires a non-empty list of values")));
        }
        let mut items = Vec::new();
        let mut after = "(";
        loop {
            self.skip_ws();
            items.push(self.parse_scalar(after)?);
            self.skip_ws();
            match self.peek() {
                Some(',') => {
                    self.bump();
                    after = ",";
                }
                Some(')') => {
                    self.bump();
                    return Ok(Value::List(items));
                }
                _ => {
                    let note = format!(
                        "; the {op} list opened at position {} is not closed",
                        self.char_pos(open)
                    );
                    return Err(self.expected_with(
                        self.pos,
                        "',' or ')'",
                        self.found(self.pos),
                        &note,
                    ));
                }
            }
        }
    }

    /// A quoted string or a number; `after` names the preceding token for messages.
    fn parse_scalar(&mut self, after: &str) -> Result<Value, Error> {
        self.skip_ws();
        let at = self.pos;
        match self.peek() {
            Some(q @ ('\'' | '"')) => Ok(Value::String(self.scan_string(q)?)),
            Some(c) if c.is_ascii_digit() || matches!(c, '+' | '-' | '.') => self.scan_number(),
            _ => {
                let word = self.peek_word();
                let hint = if word.eq_ignore_ascii_case("NULL") {
                    " (use IS NULL or IS NOT NULL to test for a missing value)"
                } else if !word.is_empty() {
                    " (string values must be quoted)"
                } else {
                    ""
                };
                Err(self.expected_with(
                    at,
                    format_args!("a value after '{after}'"),
                    self.found(at),
                    hint,
                ))
            }
        }
    }

    /// A quoted string; the cursor is on the opening quote. A doubled quote
    /// or a backslash before a quote yields the quote, `\\` yields `\`, and
    /// any other backslash is kept (so LIKE escapes such as `\%` survive).
    fn scan_string(&mut self, q: char) -> Result<String, Error> {
        let open = self.pos;
        self.bump();
        let mut out = String::new();
        loop {
            match self.bump() {
                None => return Err(self.error_at(open, "unterminated string starting")),
                Some(c) if c == q => {
                    if self.peek() == Some(q) {
                        self.bump();
                        out.push(q);
                    } else {
                        return Ok(out);
                    }
                }
                Some('\\') => match self.peek() {
                    Some(n @ ('\'' | '"' | '\\')) => {
                        self.bump();
                        out.push(n);
                    }
                    _ => out.push('\\'),
                },
                Some(c) => out.push(c),
            }
        }
    }

    /// `[+-] digits [. digits] [e [+-] digits]` (either side of the dot may be empty).
    fn scan_number(&mut self) -> Result<Value, Error> {
        let start = self.pos;
        let bytes = self.rest().as_bytes();
        let at = |i: usize| bytes.get(i).copied().unwrap_or(0);
        let digits_from = |mut i: usize| {
            while at(i).is_ascii_digit() {
                i += 1;
            }
            i
        };
        let mut i = usize::from(matches!(at(0), b'+' | b'-'));
        let int_end = digits_from(i);
        let mut digits = int_end - i;
        i = int_end;
        if at(i) == b'.' {
            let frac_end = digits_from(i + 1);
            digits += frac_end - (i + 1);
            i = frac_end;
        }
        let mut ok = digits > 0;
        if ok && matches!(at(i), b'e' | b'E') {
            let exp_start = i + 1 + usize::from(matches!(at(i + 1), b'+' | b'-'));
            let exp_end = digits_from(exp_start);
            ok = exp_end > exp_start;
            i = exp_end;
        }
        // Only ASCII was consumed, so `i` is a char boundary.
        let tail = self.rest().get(i..).unwrap_or("");
        let boundary = tail
            .chars()
            .next()
            .is_none_or(|c| !is_word_char(c) && !matches!(c, '\'' | '"' | '`'));
        let text = self.rest().get(..i).unwrap_or("");
        if !ok || !boundary {
            let bad: String = self
                .rest()
                .chars()
                .take_while(|c| !c.is_whitespace() && !matches!(c, ')' | ','))
                .take(30)
                .collect();
            return Err(self.error_at(start, format!("invalid number '{bad}'")));
        }
        match text.parse::<f64>() {
            Ok(n) if n.is_finite() => {
                self.pos += i;
                Ok(Value::Number(n))
            }
            _ => Err(self.error_at(start, format!("number '{text}' is out of range"))),
        }
    }
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::Comparator::*;
    use super::EntityKind::*;
    use super::*;
    use keel_core::ErrorCode;

    fn c(kind: EntityKind, key: &str, op: Comparator, value: Value) -> Expr {
        Expr::Cmp(Comparison {
            ident: Identifier {
                kind,
                key: key.to_string(),
            },
            op,
            value,
        })
    }
    fn s(v: &str) -> Value {
        Value::String(v.to_string())
    }
    fn n(v: f64) -> Value {
        Value::Number(v)
    }
    fn ok(input: &str) -> Expr {
        match parse_filter(input) {
            Ok(Some(e)) => e,
            other => panic!("{input:?} should parse, got {other:?}"),
        }
    }
    fn err(input: &str) -> String {
        match parse_filter(input) {
            Err(e) => {
                assert_eq!(e.code, ErrorCode::InvalidParameterValue, "{input:?}");
                e.message
            }
            Ok(v) => panic!("{input:?} should fail, got {v:?}"),
        }
    }

    #[test]
    fn parses_table_of_filters() {
        let cases: Vec<(&str, Expr)> = vec![
            // Strings the official MLflow clients send.
            (
                "tag.`mlflow.prompt.is_prompt` != 'true'",
                c(Tag, "mlflow.prompt.is_prompt", Ne, s("true")),
            ),
            ("name='bc-logreg'", c(Attribute, "name", Eq, s("bc-logreg"))),
            ("metrics.acc > 0.5", c(Metric, "acc", Gt, n(0.5))),
            (
                "metrics.m1 > 0.5 and params.p = 'x' AND tags.t LIKE '%a%'",
                Expr::And(vec![
                    c(Metric, "m1", Gt, n(0.5)),
                    c(Param, "p", Eq, s("x")),
                    c(Tag, "t", Like, s("%a%")),
                ]),
            ),
            (
                "attributes.run_id IN ('a','b')",
                c(Attribute, "run_id", In, Value::List(vec![s("a"), s("b")])),
            ),
            (
                "attributes.status = 'FINISHED'",
                c(Attribute, "status", Eq, s("FINISHED")),
            ),
            (
                "run_name ILIKE 'foo%'",
                c(Attribute, "run_name", ILike, s("foo%")),
            ),
            (
                "datasets.digest = 'abc'",
                c(Dataset, "digest", Eq, s("abc")),
            ),
            ("metrics.`a b` >= -1.5e-3", c(Metric, "a b", Ge, n(-1.5e-3))),
            (
                "(metrics.a > 1 OR metrics.b < 2) AND params.c = 'x'",
                Expr::And(vec![
                    Expr::Or(vec![c(Metric, "a", Gt, n(1.0)), c(Metric, "b", Lt, n(2.0))]),
                    c(Param, "c", Eq, s("x")),
                ]),
            ),
            ("tags.x IS NULL", c(Tag, "x", IsNull, Value::None)),
            // Identifiers.
            (
                "tags.mlflow.runName = 'r'",
                c(Tag, "mlflow.runName", Eq, s("r")),
            ),
            (
                "metrics.\"my metric\" < 3",
                c(Metric, "my metric", Lt, n(3.0)),
            ),
            ("`my col` = 'v'", c(Attribute, "my col", Eq, s("v"))),
            ("\"my col\" = 'v'", c(Attribute, "my col", Eq, s("v"))),
            ("METRIC.x=1", c(Metric, "x", Eq, n(1.0))),
            ("Parameters.lr = '0.1'", c(Param, "lr", Eq, s("0.1"))),
            ("parameter.lr = '0.1'", c(Param, "lr", Eq, s("0.1"))),
            ("param.lr = '0.1'", c(Param, "lr", Eq, s("0.1"))),
            (
                "attr.start_time >= 10",
                c(Attribute, "start_time", Ge, n(10.0)),
            ),
            ("run.end_time < 10", c(Attribute, "end_time", Lt, n(10.0))),
            ("attribute.name = 'n'", c(Attribute, "name", Eq, s("n"))),
            (
                "dataset.context = 'train'",
                c(Dataset, "context", Eq, s("train")),
            ),
            ("tags.`a-b.c d` = 'v'", c(Tag, "a-b.c d", Eq, s("v"))),
            ("tags.k/v:w-x.y = 'v'", c(Tag, "k/v:w-x.y", Eq, s("v"))),
            (
                "source_path = 's3://b/k'",
                c(Attribute, "source_path", Eq, s("s3://b/k")),
            ),
            (
                "version_number >= 2",
                c(Attribute, "version_number", Ge, n(2.0)),
            ),
            ("_private = 'x'", c(Attribute, "_private", Eq, s("x"))),
            (
                "metrics.précision > 0.1",
                c(Metric, "précision", Gt, n(0.1)),
            ),
            // Comparators, with and without whitespace.
            ("metrics.acc>0.5", c(Metric, "acc", Gt, n(0.5))),
            ("metrics.acc>=0.5", c(Metric, "acc", Ge, n(0.5))),
            ("metrics.acc<0.5", c(Metric, "acc", Lt, n(0.5))),
            ("metrics.acc<=0.5", c(Metric, "acc", Le, n(0.5))),
            ("metrics.acc!=0.5", c(Metric, "acc", Ne, n(0.5))),
            ("metrics.acc<>0.5", c(Metric, "acc", Ne, n(0.5))),
            ("metrics.acc<-1", c(Metric, "acc", Lt, n(-1.0))),
            ("name like 'a%'", c(Attribute, "name", Like, s("a%"))),
            ("name LIKE'a%'", c(Attribute, "name", Like, s("a%"))),
            ("name not like 'a%'", c(Attribute, "name", NotLike, s("a%"))),
            (
                "name NOT  ILIKE 'a%'",
                c(Attribute, "name", NotILike, s("a%")),
            ),
            (
                "run_id not in ('a')",
                c(Attribute, "run_id", NotIn, Value::List(vec![s("a")])),
            ),
            (
                "run_id IN(\"a\" , 'b',1)",
                c(
                    Attribute,
                    "run_id",
                    In,
                    Value::List(vec![s("a"), s("b"), n(1.0)]),
                ),
            ),
            ("tags.x is not null", c(Tag, "x", IsNotNull, Value::None)),
            ("tags.x IS\tNOT\nNULL", c(Tag, "x", IsNotNull, Value::None)),
            // Values.
            ("params.p = \"dq\"", c(Param, "p", Eq, s("dq"))),
            ("params.p = 'it''s'", c(Param, "p", Eq, s("it's"))),
            ("params.p = 'it\\'s'", c(Param, "p", Eq, s("it's"))),
            (
                "params.p = \"say \"\"hi\"\"\"",
                c(Param, "p", Eq, s("say \"hi\"")),
            ),
            ("params.p = 'a\\\\'", c(Param, "p", Eq, s("a\\"))),
            ("params.p LIKE '100\\%'", c(Param, "p", Like, s("100\\%"))),
            ("params.p = ''", c(Param, "p", Eq, s(""))),
            (
                "params.p = 'AND OR ( )'",
                c(Param, "p", Eq, s("AND OR ( )")),
            ),
            ("params.p = 1", c(Param, "p", Eq, n(1.0))),
            ("metrics.m = +2", c(Metric, "m", Eq, n(2.0))),
            ("metrics.m = .5", c(Metric, "m", Eq, n(0.5))),
            ("metrics.m = 5.", c(Metric, "m", Eq, n(5.0))),
            ("metrics.m = 1E+3", c(Metric, "m", Eq, n(1000.0))),
            ("metrics.m = -0", c(Metric, "m", Eq, n(0.0))),
            // Boolean structure, precedence, flattening, whitespace.
            (
                "metrics.a=1 OR metrics.b=2 AND metrics.c=3",
                Expr::Or(vec![
                    c(Metric, "a", Eq, n(1.0)),
                    Expr::And(vec![c(Metric, "b", Eq, n(2.0)), c(Metric, "c", Eq, n(3.0))]),
                ]),
            ),
            (
                "(metrics.a=1 OR metrics.b=2) OR (metrics.c=3 or metrics.d=4)",
                Expr::Or(vec![
                    c(Metric, "a", Eq, n(1.0)),
                    c(Metric, "b", Eq, n(2.0)),
                    c(Metric, "c", Eq, n(3.0)),
                    c(Metric, "d", Eq, n(4.0)),
                ]),
            ),
            (
                "metrics.a=1 AND (metrics.b=2 AND (metrics.c=3))",
                Expr::And(vec![
                    c(Metric, "a", Eq, n(1.0)),
                    c(Metric, "b", Eq, n(2.0)),
                    c(Metric, "c", Eq, n(3.0)),
                ]),
            ),
            ("((((metrics.a = 1))))", c(Metric, "a", Eq, n(1.0))),
            (
                "params.a='x'AND(params.b='y'OR params.c='z')",
                Expr::And(vec![
                    c(Param, "a", Eq, s("x")),
                    Expr::Or(vec![c(Param, "b", Eq, s("y")), c(Param, "c", Eq, s("z"))]),
                ]),
            ),
            ("  \n metrics.a = 1 \t ", c(Metric, "a", Eq, n(1.0))),
        ];
        for (input, want) in cases {
            assert_eq!(ok(input), want, "input: {input:?}");
        }
    }

    #[test]
    fn empty_filter_is_none() {
        for input in ["", " ", "\t\n  "] {
            assert_eq!(parse_filter(input), Ok(None), "{input:?}");
        }
    }

    #[test]
    fn rejects_bad_filters_with_pointed_messages() {
        // (input, fragment the message must contain)
        let cases = [
            (
                "metrics.acc >",
                "Invalid filter 'metrics.acc >': expected a value after '>' at position 13",
            ),
            (
                "params.p = 'abc",
                "unterminated string starting at position 11",
            ),
            (
                "params.p = \"abc",
                "unterminated string starting at position 11",
            ),
            ("params.p = 'it''", "unterminated string"),
            ("params.p = 'a\\'", "unterminated string"),
            (
                "metrics.acc",
                "expected a comparator (=, !=, >, >=, <, <=, LIKE, ILIKE, IN, NOT IN, IS NULL) after 'metrics.acc' at position 11",
            ),
            (
                "metrics.acc 0.5",
                "after 'metrics.acc' at position 12, found '0.5'",
            ),
            (
                "metrics.acc == 1",
                "expected a value after '=' at position 13, found '='",
            ),
            (
                "foo.bar = 1",
                "invalid entity type 'foo' in 'foo.bar' at position 0; valid prefixes are",
            ),
            (
                "metrics.a = 1 garbage",
                "expected AND, OR or the end of the filter at position 14, found 'garbage'",
            ),
            ("metrics.a = 1)", "at position 13, found ')'"),
            (
                "run_id IN ()",
                "IN requires a non-empty list of values at position 10",
            ),
            ("run_id NOT IN ( )", "NOT IN requires a non-empty list"),
            (
                "run_id IN ('a',)",
                "expected a value after ',' at position 15, found ')'",
            ),
            (
                "run_id IN ('a' 'b')",
                "expected ',' or ')' at position 15, found ''b')'; the IN list opened at position 10 is not closed",
            ),
            (
                "run_id IN ('a'",
                "expected ',' or ')' at position 14; the IN list opened",
            ),
            (
                "run_id IN 'a'",
                "expected a parenthesized list of values after 'IN'",
            ),
            (
                "AND",
                "expected an identifier at position 0, found the keyword 'AND' (quote a name",
            ),
            (
                "metrics.a = 1 AND",
                "expected an identifier (metrics.<key>, params.<key>, tags.<key>, an attribute name) or '(' at position 17",
            ),
            (
                "metrics.a = 1 OR OR metrics.b = 2",
                "expected an identifier at position 17, found the keyword 'OR'",
            ),
            (
                "(metrics.a = 1",
                "expected AND, OR or ')' at position 14; the '(' at position 0 is not closed",
            ),
            ("(metrics.a = 1 metrics.b = 2)", "found 'metrics.b'"),
            ("()", "expected an identifier"),
            (
                "metrics. = 1",
                "expected a key after 'metrics.' at position 8",
            ),
            ("tags.`` = 'x'", "empty quoted name at position 5"),
            (
                "tags.`abc = 'x'",
                "unterminated quoted name starting with ` at position 5",
            ),
            (
                "status = FINISHED",
                "found 'FINISHED' (string values must be quoted)",
            ),
            ("tags.x = NULL", "(use IS NULL or IS NOT NULL"),
            ("tags.x IS 'a'", "expected NULL after IS at position 10"),
            ("tags.x IS NOT 1", "expected NULL after IS NOT"),
            ("name NOT = 'x'", "expected LIKE, ILIKE or IN after NOT"),
            (
                "name LIKE 5",
                "LIKE requires a quoted string pattern at position 10",
            ),
            (
                "name NOT ILIKE 5",
                "NOT ILIKE requires a quoted string pattern",
            ),
            ("metrics.a > 1e", "invalid number '1e' at position 12"),
            ("metrics.a > 1.2.3", "invalid number '1.2.3'"),
            ("metrics.a > 12abc", "invalid number '12abc'"),
            ("metrics.a > -", "invalid number '-'"),
            ("metrics.a > 1e999", "number '1e999' is out of range"),
            (
                "metrics.a > `x`",
                "expected a value after '>' at position 12, found '`x`'",
            ),
            ("1 = 1", "expected an identifier"),
            ("= 1", "expected an identifier"),
            ("NOT metrics.a = 1", "keyword 'NOT'"),
            ("metrics.é > 1 AND é", "after 'é' at position 19"),
        ];
        for (input, fragment) in cases {
            let msg = err(input);
            assert!(
                msg.contains(fragment),
                "input {input:?}: message {msg:?} lacks {fragment:?}"
            );
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let ok_depth = format!(
            "{}metrics.a = 1{}",
            "(".repeat(MAX_DEPTH),
            ")".repeat(MAX_DEPTH)
        );
        assert_eq!(ok(&ok_depth), c(Metric, "a", Eq, n(1.0)));
        let deep = format!(
            "{}metrics.a = 1{}",
            "(".repeat(MAX_DEPTH + 1),
            ")".repeat(MAX_DEPTH + 1)
        );
        assert!(err(&deep).contains("parentheses nest deeper than 100 levels"));
        assert!(err(&"(".repeat(60_000)).contains("nest deeper"));
        assert!(err(&"(".repeat(100_000)).contains("bytes long"));
        let many = vec!["metrics.a = 1"; 101].join(" OR ");
        assert!(err(&many).contains("101 comparisons"), "{}", err(&many));
        let list = format!("params.p IN ({})", vec!["'v'"; 1001].join(","));
        assert!(err(&list).contains("1001 values"), "{}", err(&list));
    }

    #[test]
    fn comparisons_lists_every_leaf_in_order() {
        let e = ok("metrics.a = 1 AND (tags.b = 'x' OR params.c = 'y') AND name = 'z'");
        let keys: Vec<&str> = e
            .comparisons()
            .iter()
            .map(|c| c.ident.key.as_str())
            .collect();
        assert_eq!(keys, ["a", "b", "c", "name"]);
        assert_eq!(ok("tags.x IS NULL").comparisons().len(), 1);
    }

    #[test]
    fn comparator_spellings() {
        let all = [
            Eq, Ne, Gt, Ge, Lt, Le, Like, ILike, NotLike, NotILike, In, NotIn, IsNull, IsNotNull,
        ];
        for op in all {
            let value = match op {
                In | NotIn => "('v')",
                IsNull | IsNotNull => "",
                _ => "'v'",
            };
            let input = format!("tags.t {} {value}", op.as_str());
            assert_eq!(ok(&input).comparisons()[0].op, op, "{input}");
        }
    }

    #[test]
    fn syntax_errors_carry_their_position() {
        let position = |input: &str| parse_filter_located(input).err().and_then(|(_, at)| at);
        assert_eq!(position("metrics.acc > 0.5 AND"), Some(21));
        assert_eq!(position("metrics.acc >> 1"), Some(13));
        assert_eq!(position("params.é = 'x' OR ("), Some(19));
        assert_eq!(position("metrics.acc > 0.5"), None);
        let (error, _) = parse_filter_located("metrics.acc >> 1").unwrap_err();
        assert_eq!(
            error.message,
            parse_filter("metrics.acc >> 1").unwrap_err().message
        );
    }

    #[test]
    fn parses_order_by() {
        let ob = |kind, key: &str, ascending| OrderBy {
            ident: Identifier {
                kind,
                key: key.to_string(),
            },
            ascending,
        };
        let cases = [
            ("metrics.m2 DESC", ob(Metric, "m2", false)),
            ("attributes.start_time", ob(Attribute, "start_time", true)),
            ("name ASC", ob(Attribute, "name", true)),
            ("`my metric` desc", ob(Attribute, "my metric", false)),
            ("metrics.`my metric` Desc", ob(Metric, "my metric", false)),
            (
                "  tags.mlflow.runName   asc  ",
                ob(Tag, "mlflow.runName", true),
            ),
            ("params.\"p q\"", ob(Param, "p q", true)),
            ("version_number", ob(Attribute, "version_number", true)),
        ];
        for (input, want) in cases {
            assert_eq!(parse_order_by(input), Ok(want), "{input:?}");
        }
        let errors = [
            ("", "Invalid order_by clause '': it is empty"),
            ("   ", "it is empty"),
            (
                "metrics.m DESC extra",
                "expected the end of the clause at position 15, found 'extra'",
            ),
            (
                "metrics.m DESCENDING",
                "expected ASC, DESC or the end of the clause at position 10, found 'DESCENDING'",
            ),
            ("foo.bar", "invalid entity type 'foo'"),
            ("metrics.", "expected a key after 'metrics.'"),
            ("`unterminated", "unterminated quoted name"),
            ("1", "expected an identifier"),
        ];
        for (input, fragment) in errors {
            match parse_order_by(input) {
                Err(e) => {
                    assert_eq!(e.code, ErrorCode::InvalidParameterValue);
                    assert!(
                        e.message.contains(fragment),
                        "{input:?}: {:?} lacks {fragment:?}",
                        e.message
                    );
                }
                Ok(v) => panic!("{input:?} should fail, got {v:?}"),
            }
        }
    }

    /// Tiny deterministic LCG (Knuth's MMIX constants) so tests need no crates.
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
            items[self.below(items.len())]
        }
        fn case(&mut self, word: &str) -> String {
            word.chars()
                .map(|c| {
                    if self.below(2) == 0 {
                        c.to_ascii_lowercase()
                    } else {
                        c.to_ascii_uppercase()
                    }
                })
                .collect()
        }
    }

    /// Errors must be well-formed; successes must be structurally sound.
    fn check_no_panic(input: &str) {
        match parse_filter(input) {
            Ok(Some(e)) => {
                assert!(!e.comparisons().is_empty());
                // A parsed tree renders to a filter that parses back to itself.
                assert_eq!(
                    parse_filter(&e.to_string()),
                    Ok(Some(e.clone())),
                    "{input:?}"
                );
            }
            Ok(None) => assert!(input.trim().is_empty(), "{input:?}"),
            Err(e) => {
                assert_eq!(e.code, ErrorCode::InvalidParameterValue);
                assert!(
                    e.message.starts_with("Invalid filter '"),
                    "{input:?}: {}",
                    e.message
                );
                assert!(
                    e.message.contains(" at position "),
                    "{input:?}: {}",
                    e.message
                );
            }
        }
        if let Err(e) = parse_order_by(input) {
            assert_eq!(e.code, ErrorCode::InvalidParameterValue);
            assert!(
                e.message.starts_with("Invalid order_by clause '"),
                "{input:?}: {}",
                e.message
            );
        }
    }

    #[test]
    fn garbage_never_panics() {
        let valid = [
            "tag.`mlflow.prompt.is_prompt` != 'true'",
            "metrics.m1 > 0.5 and params.p = 'x' AND tags.t LIKE '%a%'",
            "attributes.run_id IN ('a','b')",
            "metrics.`a b` >= -1.5e-3",
            "(metrics.a > 1 OR metrics.b < 2) AND params.c = 'x'",
            "tags.x IS NOT NULL",
            "params.p = 'it''s' OR params.q = \"a\\\"b\" OR name NOT ILIKE 'é%'",
        ];
        for v in valid {
            assert!(parse_filter(v).is_ok_and(|e| e.is_some()), "{v:?}");
            for (i, _) in v.char_indices() {
                check_no_panic(&v[..i]);
                check_no_panic(&v[i..]);
            }
        }
        let fragments = [
            "metrics", "params", "tags", ".", "`", "'", "\"", "(", ")", " AND ", " or ", "IN",
            "NOT", "IS", "NULL", "LIKE", "=", "<", ">", "!", "-", "+", "1", "e", "\\", "é", ",",
            " ", "x", "\t", "5.", "\u{0}", "🦀",
        ];
        let mut rng = Lcg(0x5eed);
        for _ in 0..20_000 {
            let len = rng.below(12);
            let input: String = (0..len).map(|_| rng.pick(&fragments)).collect();
            check_no_panic(&input);
        }
        for _ in 0..5_000 {
            let len = rng.below(24);
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            check_no_panic(&String::from_utf8_lossy(&bytes));
        }
    }

    /// Builds random *valid* filters (varied case, quoting, spacing, nesting),
    /// returning the text and the comparisons it contains, in order.
    fn gen_expr(rng: &mut Lcg, depth: usize, out: &mut String, leaves: &mut Vec<Comparison>) {
        let terms = 1 + rng.below(3);
        for t in 0..terms {
            if t > 0 {
                out.push_str(&format!(" {} ", rng.case("or")));
            }
            let factors = 1 + rng.below(3);
            for f in 0..factors {
                if f > 0 {
                    out.push_str(&format!(
                        "{}{}{}",
                        rng.pick(&[" ", "\n"]),
                        rng.case("and"),
                        rng.pick(&[" ", "  "])
                    ));
                }
                if depth > 0 && rng.below(4) == 0 {
                    out.push_str(rng.pick(&["(", "( "]));
                    gen_expr(rng, depth - 1, out, leaves);
                    out.push_str(rng.pick(&[")", " )"]));
                } else {
                    gen_comparison(rng, out, leaves);
                }
            }
        }
    }

    fn gen_comparison(rng: &mut Lcg, out: &mut String, leaves: &mut Vec<Comparison>) {
        let prefixes: [(&str, EntityKind); 8] = [
            ("metrics", Metric),
            ("metric", Metric),
            ("params", Param),
            ("parameter", Param),
            ("tag", Tag),
            ("attributes", Attribute),
            ("run", Attribute),
            ("datasets", Dataset),
        ];
        let keys = ["acc", "m.1", "a-b/c:d", "x_2"];
        let quoted_keys = ["a b", "mlflow.runName", "x=1 AND", "é"];
        let (kind, key) = match rng.below(3) {
            0 => {
                let key = rng.pick(&["name", "run_name", "status"]);
                out.push_str(key);
                (Attribute, key.to_string())
            }
            1 => {
                let (p, kind) = prefixes[rng.below(prefixes.len())];
                let key = rng.pick(&keys);
                out.push_str(&format!("{}.{key}", rng.case(p)));
                (kind, key.to_string())
            }
            _ => {
                let (p, kind) = prefixes[rng.below(prefixes.len())];
                let key = rng.pick(&quoted_keys);
                let q = rng.pick(&["`", "\""]);
                out.push_str(&format!("{}.{q}{key}{q}", rng.case(p)));
                (kind, key.to_string())
            }
        };
        let numbers: [(&str, f64); 6] = [
            ("0.5", 0.5),
            ("-1.5e-3", -1.5e-3),
            ("+2", 2.0),
            ("10", 10.0),
            (".25", 0.25),
            ("3E2", 300.0),
        ];
        let strings: [(&str, &str); 5] = [
            ("'x'", "x"),
            ("\"dq\"", "dq"),
            ("'it''s'", "it's"),
            ("'a\\'b'", "a'b"),
            ("'%AND%'", "%AND%"),
        ];
        let scalar = |rng: &mut Lcg, out: &mut String, allow_number: bool| {
            if allow_number && rng.below(2) == 0 {
                let (text, v) = numbers[rng.below(numbers.len())];
                out.push_str(text);
                Value::Number(v)
            } else {
                let (text, v) = strings[rng.below(strings.len())];
                out.push_str(text);
                s(v)
            }
        };
        let ws = |rng: &mut Lcg| rng.pick(&["", " ", "\t"]);
        let (op, value) = match rng.below(6) {
            0 | 1 => {
                let (text, op) = [
                    ("=", Eq),
                    ("!=", Ne),
                    ("<>", Ne),
                    (">", Gt),
                    (">=", Ge),
                    ("<", Lt),
                    ("<=", Le),
                ][rng.below(7)];
                out.push_str(&format!("{}{text}{}", ws(rng), ws(rng)));
                (op, scalar(rng, out, true))
            }
            2 => {
                let (text, op) = [
                    ("like", Like),
                    ("ilike", ILike),
                    ("not like", NotLike),
                    ("not ilike", NotILike),
                ][rng.below(4)];
                out.push_str(&format!(" {} ", rng.case(text)));
                (op, scalar(rng, out, false))
            }
            3 | 4 => {
                let (text, op) = [("in", In), ("not in", NotIn)][rng.below(2)];
                out.push_str(&format!(" {} {}", rng.case(text), rng.pick(&["(", "( "])));
                let mut items = Vec::new();
                for i in 0..1 + rng.below(3) {
                    if i > 0 {
                        out.push_str(rng.pick(&[",", " , "]));
                    }
                    items.push(scalar(rng, out, true));
                }
                out.push(')');
                (op, Value::List(items))
            }
            _ => {
                let (text, op) = [("is null", IsNull), ("is not null", IsNotNull)][rng.below(2)];
                out.push_str(&format!(" {}", rng.case(text)));
                (op, Value::None)
            }
        };
        leaves.push(Comparison {
            ident: Identifier { kind, key },
            op,
            value,
        });
    }

    #[test]
    fn random_valid_filters_parse_and_round_trip() {
        let mut rng = Lcg(42);
        for _ in 0..3_000 {
            let mut text = String::new();
            let mut leaves = Vec::new();
            gen_expr(&mut rng, 3, &mut text, &mut leaves);
            if leaves.len() > keel_core::validation::MAX_FILTER_COMPARISONS {
                assert!(err(&text).contains("comparisons"), "{text:?}");
                continue;
            }
            let expr = ok(&text);
            let got: Vec<Comparison> = expr.comparisons().into_iter().cloned().collect();
            assert_eq!(got, leaves, "{text:?}");
            assert_eq!(
                parse_filter(&expr.to_string()),
                Ok(Some(expr.clone())),
                "{text:?} -> {expr}"
            );
            // Flattening invariant: no And directly inside And, no Or inside Or, no 1-child nodes.
            fn flat(e: &Expr) -> bool {
                match e {
                    Expr::And(v) => {
                        v.len() > 1 && v.iter().all(|c| !matches!(c, Expr::And(_)) && flat(c))
                    }
                    Expr::Or(v) => {
                        v.len() > 1 && v.iter().all(|c| !matches!(c, Expr::Or(_)) && flat(c))
                    }
                    Expr::Cmp(_) => true,
                }
            }
            assert!(flat(&expr), "{text:?} -> {expr:?}");
        }
    }

    #[test]
    fn display_renders_canonical_filter() {
        let e =
            ok("(metrics.a > 1 OR tags.`b` IS NULL) AND params.c IN ('x', 2) AND name = 'it''s'");
        assert_eq!(
            e.to_string(),
            "(metrics.`a` > 1 OR tags.`b` IS NULL) AND params.`c` IN ('x', 2) AND attributes.`name` = 'it''s'"
        );
    }
}

//! Rule patterns: `*` within one path segment, `**` across segments, `?` one character;
//! matching with a step budget then a table, overlap of two patterns, precedence.

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token {
    Lit(char),
    Any,
    AnyInSegment,
    One,
}

/// A compiled glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Glob {
    pub(crate) tokens: Vec<Token>,
    /// No wildcard at all.
    pub(crate) exact: bool,
    /// Characters before the first wildcard: the first measure of how specific it is.
    pub(crate) prefix: usize,
    /// Literal characters in all.
    pub(crate) literal: usize,
}

impl Glob {
    pub(crate) fn new(pattern: &str) -> Result<Glob, String> {
        if pattern.is_empty() {
            return Err("match pattern is empty".to_owned());
        }
        if pattern.contains("***") {
            return Err(format!("match pattern {pattern:?}: use * or **, not ***"));
        }
        let mut tokens = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            tokens.push(match c {
                '*' if chars.peek() == Some(&'*') => {
                    chars.next();
                    Token::Any
                }
                '*' => Token::AnyInSegment,
                '?' => Token::One,
                c => Token::Lit(c),
            });
        }
        let literal = tokens.iter().filter(|t| matches!(t, Token::Lit(_))).count();
        let prefix = tokens
            .iter()
            .take_while(|t| matches!(t, Token::Lit(_)))
            .count();
        Ok(Glob {
            exact: literal == tokens.len(),
            prefix,
            literal,
            tokens,
        })
    }

    /// Precedence: an exact pattern, then the longest literal text before the first
    /// wildcard (the path an operator wrote out), then the most literal characters.
    pub(crate) fn rank(&self) -> (bool, usize, usize) {
        (self.exact, self.prefix, self.literal)
    }

    /// Whether some string matches both globs: a search over pairs of positions.
    pub(crate) fn overlaps(&self, other: &Glob) -> bool {
        let (a, b) = (&self.tokens, &other.tokens);
        let star = |t: Option<&Token>| matches!(t, Some(Token::Any | Token::AnyInSegment));
        // What one token accepts as the next character: a literal, any but '/', anything.
        let class = |t: &Token| match t {
            Token::Lit(c) => Some(*c),
            _ => None,
        };
        let slash_ok = |t: &Token| matches!(t, Token::Any) || matches!(t, Token::Lit('/'));
        let mut seen = std::collections::HashSet::new();
        let mut todo = vec![(0usize, 0usize)];
        while let Some((i, j)) = todo.pop() {
            if !seen.insert((i, j)) {
                continue;
            }
            if i == a.len() && j == b.len() {
                return true;
            }
            // A star may match nothing.
            if star(a.get(i)) {
                todo.push((i + 1, j));
            }
            if star(b.get(j)) {
                todo.push((i, j + 1));
            }
            let (Some(ta), Some(tb)) = (a.get(i), b.get(j)) else {
                continue;
            };
            let common = match (class(ta), class(tb)) {
                (Some(x), Some(y)) => x == y,
                (Some(x), None) => x != '/' || slash_ok(tb),
                (None, Some(y)) => y != '/' || slash_ok(ta),
                // Two wildcards share every character but '/', at least.
                (None, None) => true,
            };
            if common {
                let ni = if star(Some(ta)) { i } else { i + 1 };
                let nj = if star(Some(tb)) { j } else { j + 1 };
                if (ni, nj) != (i, j) {
                    todo.push((ni, nj));
                }
                // A star may also stop after this character.
                if star(Some(ta)) {
                    todo.push((i + 1, nj));
                }
                if star(Some(tb)) {
                    todo.push((ni, j + 1));
                }
            }
        }
        false
    }

    pub(crate) fn matches(&self, s: &str) -> bool {
        let chars: Vec<char> = s.chars().collect();
        // Backtracking is fast for real patterns; a pattern with several `**` against a
        // long hostile reference could take polynomial time of high degree, so after a
        // step budget the dynamic-programming matcher (O(tokens x chars)) decides.
        let mut budget = 4096u32;
        match backtrack(&self.tokens, &chars, &mut budget) {
            Some(m) => m,
            None => table_match(&self.tokens, &chars),
        }
    }
}

/// `None` when the budget ran out.
pub(crate) fn backtrack(t: &[Token], s: &[char], budget: &mut u32) -> Option<bool> {
    *budget = budget.checked_sub(1)?;
    Some(match t.first() {
        None => s.is_empty(),
        Some(Token::Lit(c)) => s.first() == Some(c) && backtrack(&t[1..], &s[1..], budget)?,
        Some(Token::One) => {
            s.first().is_some_and(|c| *c != '/') && backtrack(&t[1..], &s[1..], budget)?
        }
        Some(Token::AnyInSegment) => {
            let mut i = 0;
            loop {
                if backtrack(&t[1..], &s[i..], budget)? {
                    break true;
                }
                if i >= s.len() || s[i] == '/' {
                    break false;
                }
                i += 1;
            }
        }
        Some(Token::Any) => {
            let mut found = false;
            for i in 0..=s.len() {
                if backtrack(&t[1..], &s[i..], budget)? {
                    found = true;
                    break;
                }
            }
            found
        }
    })
}

/// `m[j]`: the tokens so far match `s[..j]`.
pub(crate) fn table_match(t: &[Token], s: &[char]) -> bool {
    let mut m = vec![false; s.len() + 1];
    m[0] = true;
    for tok in t {
        let mut next = vec![false; s.len() + 1];
        match tok {
            Token::Lit(c) => {
                for j in 0..s.len() {
                    next[j + 1] = m[j] && s[j] == *c;
                }
            }
            Token::One => {
                for j in 0..s.len() {
                    next[j + 1] = m[j] && s[j] != '/';
                }
            }
            Token::Any => {
                let mut any = false;
                for j in 0..=s.len() {
                    any |= m[j];
                    next[j] = any;
                }
            }
            Token::AnyInSegment => {
                let mut run = false;
                for j in 0..=s.len() {
                    run = m[j] || (run && j > 0 && s[j - 1] != '/');
                    next[j] = run;
                }
            }
        }
        m = next;
    }
    m[s.len()]
}

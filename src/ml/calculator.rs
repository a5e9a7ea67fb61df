//! The GSM8K calculator: `<<48/2=24>>` annotations are computed, not guessed.
//!
//! GSM8K solutions mark each calculation as `<<expression=result>>`. While the prover samples,
//! the moment it writes `<<expression=` the sampler computes the expression here and writes the
//! result and `>>` itself, overriding whatever digits the model would have produced, as the
//! original GSM8K calculator does. A tiny model's mistakes are then in its reasoning, not its
//! arithmetic, which is what the sneaky role is meant to exercise.

/// If `text` ends inside an annotation right after its `=`, the expression to compute.
pub fn pending_expression(text: &str) -> Option<&str> {
    let body = text.strip_suffix('=')?;
    let open = body.rfind("<<")?;
    let expression = &body[open + 2..];
    if expression.contains(">>") || expression.contains('\n') || expression.trim().is_empty() {
        return None;
    }
    Some(expression)
}

/// Evaluates `+ - * /` with parentheses over decimal numbers; `None` for anything else, an
/// unbalanced expression or a division by zero.
pub fn evaluate(expression: &str) -> Option<f64> {
    let tokens: Vec<char> = expression
        .chars()
        .filter(|c| !c.is_whitespace() && *c != ',')
        .collect();
    let mut parser = Parser { tokens, at: 0 };
    let value = parser.sum()?;
    (parser.at == parser.tokens.len() && value.is_finite()).then_some(value)
}

/// The calculator's result as GSM8K writes it: integers without a decimal point, other values
/// with at most four decimals and no trailing zeros.
pub fn format_result(value: f64) -> String {
    if (value - value.round()).abs() < 1e-9 {
        return format!("{}", value.round() as i64);
    }
    let text = format!("{value:.4}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// What the sampler appends after `text` when it ends with `<<expression=`: the result and `>>`.
pub fn completion(text: &str) -> Option<String> {
    let value = evaluate(pending_expression(text)?)?;
    Some(format!("{}>>", format_result(value)))
}

struct Parser {
    tokens: Vec<char>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.tokens.get(self.at).copied()
    }

    fn sum(&mut self) -> Option<f64> {
        let mut value = self.product()?;
        while let Some(op @ ('+' | '-')) = self.peek() {
            self.at += 1;
            let rhs = self.product()?;
            value = if op == '+' { value + rhs } else { value - rhs };
        }
        Some(value)
    }

    fn product(&mut self) -> Option<f64> {
        let mut value = self.factor()?;
        while let Some(op @ ('*' | '/' | 'x' | '×')) = self.peek() {
            self.at += 1;
            let rhs = self.factor()?;
            value = if op == '/' {
                if rhs == 0.0 {
                    return None;
                }
                value / rhs
            } else {
                value * rhs
            };
        }
        Some(value)
    }

    fn factor(&mut self) -> Option<f64> {
        match self.peek()? {
            '-' => {
                self.at += 1;
                Some(-self.factor()?)
            }
            '(' => {
                self.at += 1;
                let value = self.sum()?;
                (self.peek()? == ')').then(|| self.at += 1)?;
                Some(value)
            }
            _ => {
                let start = self.at;
                while self.peek().is_some_and(|c| c.is_ascii_digit() || c == '.') {
                    self.at += 1;
                }
                let number: String = self.tokens[start..self.at].iter().collect();
                number.parse().ok()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completes_an_open_annotation() {
        assert_eq!(completion("She has <<48/2=").as_deref(), Some("24>>"));
        assert_eq!(completion("<<3+4*2=").as_deref(), Some("11>>"));
        assert_eq!(completion("<<(3+4)*2=").as_deref(), Some("14>>"));
        assert_eq!(completion("<<7/2=").as_deref(), Some("3.5>>"));
        assert_eq!(completion("<<1,200-200=").as_deref(), Some("1000>>"));
        assert_eq!(completion("<<10/3=").as_deref(), Some("3.3333>>"));
    }

    #[test]
    fn leaves_other_text_alone() {
        assert_eq!(completion("x = "), None);
        assert_eq!(completion("<<2+2=4>> so 4 ="), None);
        assert_eq!(completion("<<="), None);
        assert_eq!(completion("<<5/0="), None);
        assert_eq!(completion("<<5 apples="), None);
        assert_eq!(completion("<<(2+3="), None);
        assert_eq!(completion("<<2\n+3="), None);
    }
}

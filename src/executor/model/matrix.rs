//! Matrix expansion as GitHub documents it: the cartesian product of the dimensions, minus
//! `exclude` (partial matches), then `include` entries merged into every combination whose original
//! values they do not contradict, or appended as new combinations when they fit none.

use indexmap::IndexMap;
use serde_json::Value;

/// One combination: dimension name to value, in dimension order.
pub type Combination = IndexMap<String, Value>;

/// GitHub's limit on the configurations one matrix produces.
pub const MAX_CONFIGURATIONS: usize = 256;

/// The most combinations a product may have before `exclude` is applied. Past it the matrix is
/// refused unexpanded (excludes would have to remove all but a sliver of it); below it, expanding
/// costs a few megabytes at most and the exact count is checked against [`MAX_CONFIGURATIONS`].
const MAX_PRODUCT: usize = MAX_CONFIGURATIONS * MAX_CONFIGURATIONS;

/// Why a matrix cannot be expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatrixError {
    UnknownExcludeKey(String),
    /// More configurations than [`MAX_CONFIGURATIONS`] (the product of the dimensions when it
    /// was too large to expand).
    TooMany(usize),
}

impl std::fmt::Display for MatrixError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MatrixError::UnknownExcludeKey(key) => {
                write!(f, "matrix.exclude: unknown key `{key}`")
            }
            MatrixError::TooMany(n) => write!(
                f,
                "produced {n} configurations which exceeds the maximum of {MAX_CONFIGURATIONS} configurations"
            ),
        }
    }
}

/// Expands a matrix whose dimensions are already evaluated; refuses one of more than
/// [`MAX_CONFIGURATIONS`] configurations, a large product before anything is allocated.
pub fn expand(
    dimensions: &IndexMap<String, Vec<Value>>,
    include: &[Combination],
    exclude: &[Combination],
) -> Result<Vec<Combination>, MatrixError> {
    for entry in exclude {
        for key in entry.keys() {
            if !dimensions.contains_key(key) {
                return Err(MatrixError::UnknownExcludeKey(key.clone()));
            }
        }
    }
    if !dimensions.is_empty() {
        let product = dimensions
            .values()
            .try_fold(1usize, |product, values| product.checked_mul(values.len()))
            .unwrap_or(usize::MAX);
        if product > MAX_PRODUCT {
            return Err(MatrixError::TooMany(product));
        }
    }
    let mut combinations: Vec<Combination> = Vec::new();
    if !dimensions.is_empty() {
        combinations.push(Combination::new());
        for (name, values) in dimensions {
            let mut next = Vec::with_capacity(combinations.len() * values.len());
            for combination in &combinations {
                for value in values {
                    let mut extended = combination.clone();
                    extended.insert(name.clone(), value.clone());
                    next.push(extended);
                }
            }
            combinations = next;
        }
    }
    combinations.retain(|combination| {
        !exclude.iter().any(|entry| {
            entry
                .iter()
                .all(|(key, value)| combination.get(key) == Some(value))
        })
    });

    let n_original = combinations.len();
    let mut appended = Vec::new();
    for entry in include {
        let mut matched = false;
        for combination in combinations.iter_mut().take(n_original) {
            let fits = entry.iter().all(|(key, value)| {
                !dimensions.contains_key(key) || combination.get(key) == Some(value)
            });
            if fits {
                matched = true;
                for (key, value) in entry {
                    if !dimensions.contains_key(key) {
                        combination.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        if !matched {
            appended.push(entry.clone());
        }
    }
    combinations.extend(appended);
    if combinations.len() > MAX_CONFIGURATIONS {
        return Err(MatrixError::TooMany(combinations.len()));
    }
    Ok(combinations)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn combination(value: Value) -> Combination {
        serde_json::from_value(value).unwrap()
    }

    fn dims(value: Value) -> IndexMap<String, Vec<Value>> {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn more_than_256_configurations_are_refused_before_expanding() {
        let axis: Vec<Value> = (0..256).map(|n| json!(n)).collect();
        let mut dimensions = IndexMap::new();
        for name in ["a", "b", "c"] {
            dimensions.insert(name.to_owned(), axis.clone());
        }
        // 16.7 million legs would take gigabytes; the refusal is immediate.
        assert_eq!(
            expand(&dimensions, &[], &[]).unwrap_err().to_string(),
            "produced 16777216 configurations which exceeds the maximum of 256 configurations"
        );
        let exactly: IndexMap<String, Vec<Value>> = [("a".to_owned(), axis.clone())].into();
        assert_eq!(expand(&exactly, &[], &[]).unwrap().len(), 256);
        let one_more = [combination(json!({"a": "extra"}))];
        assert_eq!(
            expand(&exactly, &one_more, &[]).unwrap_err(),
            MatrixError::TooMany(257)
        );
        // Excludes count: 2 × 256 minus 256 is within the limit.
        let two: IndexMap<String, Vec<Value>> = [
            ("a".to_owned(), axis),
            ("b".to_owned(), vec![json!(0), json!(1)]),
        ]
        .into();
        let without_one = [combination(json!({"b": 1}))];
        assert_eq!(expand(&two, &[], &without_one).unwrap().len(), 256);
    }

    #[test]
    fn product_keeps_dimension_order() {
        let result = expand(&dims(json!({"os": ["a", "b"], "v": [1, 2]})), &[], &[]).unwrap();
        assert_eq!(result.len(), 4);
        assert_eq!(result[1], combination(json!({"os": "a", "v": 2})));
    }

    #[test]
    fn exclude_removes_partial_matches() {
        let result = expand(
            &dims(json!({"os": ["a", "b"], "v": [1, 2]})),
            &[],
            &[combination(json!({"os": "b"}))],
        )
        .unwrap();
        assert_eq!(result.len(), 2);
    }

    #[test]
    fn exclude_with_unknown_key_is_an_error() {
        let error = expand(
            &dims(json!({"os": ["a"]})),
            &[],
            &[combination(json!({"x": 1}))],
        );
        assert!(error.is_err());
    }

    #[test]
    fn include_extends_matching_and_appends_the_rest() {
        // The example from GitHub's documentation.
        let result = expand(
            &dims(json!({"fruit": ["apple", "pear"], "animal": ["cat", "dog"]})),
            &[
                combination(json!({"color": "green"})),
                combination(json!({"color": "pink", "animal": "cat"})),
                combination(json!({"fruit": "apple", "shape": "circle"})),
                combination(json!({"fruit": "banana"})),
                combination(json!({"fruit": "banana", "animal": "cat"})),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(
            result,
            vec![
                combination(
                    json!({"fruit": "apple", "animal": "cat", "color": "pink", "shape": "circle"})
                ),
                combination(
                    json!({"fruit": "apple", "animal": "dog", "color": "green", "shape": "circle"})
                ),
                combination(json!({"fruit": "pear", "animal": "cat", "color": "pink"})),
                combination(json!({"fruit": "pear", "animal": "dog", "color": "green"})),
                combination(json!({"fruit": "banana"})),
                combination(json!({"fruit": "banana", "animal": "cat"})),
            ]
        );
    }

    #[test]
    fn include_only_matrix_is_its_entries() {
        let result = expand(
            &IndexMap::new(),
            &[combination(json!({"a": 1})), combination(json!({"a": 2}))],
            &[],
        )
        .unwrap();
        assert_eq!(result.len(), 2);
    }
}

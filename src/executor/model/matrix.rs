//! Matrix expansion as GitHub documents it: the cartesian product of the dimensions, minus
//! `exclude` (partial matches), then `include` entries merged into every combination whose original
//! values they do not contradict, or appended as new combinations when they fit none.

use indexmap::IndexMap;
use serde_json::Value;

/// One combination: dimension name to value, in dimension order.
pub type Combination = IndexMap<String, Value>;

/// Expands a matrix whose dimensions are already evaluated.
pub fn expand(
    dimensions: &IndexMap<String, Vec<Value>>,
    include: &[Combination],
    exclude: &[Combination],
) -> Result<Vec<Combination>, String> {
    for entry in exclude {
        for key in entry.keys() {
            if !dimensions.contains_key(key) {
                return Err(format!("matrix.exclude: unknown key `{key}`"));
            }
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

//! Reading `template.yaml` as CloudFormation does, for the tests that build their
//! emulator table from it and check the template against the code.

use std::path::Path;

use aws_sdk_dynamodb::Client;
use serde_json::{json, Value};
use snapnest_aws::dynamodb;
use snapnest_core::store::StoreError;

/// `template.yaml` as JSON with short-form tags in their long form.
pub fn load_template(template: &Path) -> Value {
    let text = std::fs::read_to_string(template).unwrap_or_else(|e| panic!("read {}: {e}", template.display()));
    let yaml: serde_yaml::Value =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", template.display()));
    yaml_to_json(yaml)
}

/// Creates `table_name` from the `SnapnestTable` resource of a SAM/CloudFormation YAML
/// template (the YAML reading lives here: the `snapnest` crate has no YAML parser).
pub async fn create_table_from_template(client: &Client, template: &Path, table_name: &str) -> Result<(), StoreError> {
    let text = std::fs::read_to_string(template)
        .map_err(|e| StoreError::Internal(format!("read {}: {e}", template.display())))?;
    let yaml: serde_yaml::Value =
        serde_yaml::from_str(&text).map_err(|e| StoreError::Internal(format!("parse {}: {e}", template.display())))?;
    let template = yaml_to_json(yaml);
    dynamodb::create_table_from_definition(client, dynamodb::table_resource(&template)?, table_name).await
}

/// YAML to JSON as CloudFormation reads it: a short-form tag (`!Ref X`, `!Sub s`,
/// `!GetAtt A.B`) becomes its long form (`{"Ref": "X"}`, `{"Fn::Sub": "s"}`,
/// `{"Fn::GetAtt": ["A", "B"]}`).
pub fn yaml_to_json(value: serde_yaml::Value) -> Value {
    use serde_yaml::Value as Yaml;
    match value {
        Yaml::Null => Value::Null,
        Yaml::Bool(b) => Value::Bool(b),
        Yaml::Number(number) => match (number.as_i64(), number.as_u64(), number.as_f64()) {
            (Some(i), _, _) => json!(i),
            (_, Some(u), _) => json!(u),
            (_, _, Some(f)) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
            _ => Value::Null,
        },
        Yaml::String(text) => Value::String(text),
        Yaml::Sequence(items) => Value::Array(items.into_iter().map(yaml_to_json).collect()),
        Yaml::Mapping(mapping) => Value::Object(
            mapping
                .into_iter()
                .map(|(key, value)| {
                    let key = match key {
                        Yaml::String(text) => text,
                        other => serde_yaml::to_string(&other).unwrap_or_default().trim().to_owned(),
                    };
                    (key, yaml_to_json(value))
                })
                .collect(),
        ),
        Yaml::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!');
            let function = if matches!(name, "Ref" | "Condition") { name.to_owned() } else { format!("Fn::{name}") };
            let argument = match (name, yaml_to_json(tagged.value)) {
                ("GetAtt", Value::String(path)) => match path.split_once('.') {
                    Some((resource, attribute)) => json!([resource, attribute]),
                    None => Value::String(path),
                },
                (_, argument) => argument,
            };
            json!({ function: argument })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::moto::repo_root;

    #[test]
    fn template_short_form_tags_read_as_intrinsic_functions() {
        let yaml =
            "A: !Ref Table\nB: !Sub '${AWS::StackName}-x'\nC: !GetAtt SnapnestTable.Arn\nD: !Join ['', [a, !Ref B]]\n";
        let json = yaml_to_json(serde_yaml::from_str(yaml).unwrap());
        assert_eq!(
            json,
            json!({
                "A": { "Ref": "Table" },
                "B": { "Fn::Sub": "${AWS::StackName}-x" },
                "C": { "Fn::GetAtt": ["SnapnestTable", "Arn"] },
                "D": { "Fn::Join": ["", ["a", { "Ref": "B" }]] },
            })
        );
        let template: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(repo_root().join("template.yaml")).unwrap()).unwrap();
        let template = yaml_to_json(template);
        let table = dynamodb::table_resource(&template).expect("template.yaml defines SnapnestTable");
        assert_eq!(table["Type"], "AWS::DynamoDB::Table");
        assert!(table["Properties"].get("TableName").is_none(), "CloudFormation names the table");
    }
}

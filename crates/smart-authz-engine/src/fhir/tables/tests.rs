use super::*;

#[test]
fn only_domain_resources_inherit_domain_resource_parameters() {
    for non_domain in ["Binary", "Bundle", "Parameters"] {
        assert_eq!(R4.search_param(non_domain, "_text"), None, "{non_domain}");
        assert_eq!(
            R4.search_param(non_domain, "_id").map(|param| param.code),
            Some("_id"),
            "{non_domain}"
        );
    }
    assert_eq!(
        R4.search_param("Observation", "_text")
            .map(|param| param.code),
        Some("_text")
    );
    assert_eq!(
        R4.search_param("Binary", "_lastUpdated")
            .map(|param| param.kind),
        Some(SearchParamKind::Date)
    );
    assert_eq!(
        R4.search_param("Bundle", "identifier")
            .map(|param| param.code),
        Some("identifier")
    );
    // R4B and R5 also define `_text` on Resource (`Resource-text`), which every type
    // inherits; a DomainResource gets its nearer `DomainResource-text`.
    for tables in [&R4B, &R5] {
        assert_eq!(
            tables
                .search_param("Binary", "_text")
                .map(|param| param.code),
            Some("_text")
        );
        for resource_type in ["Observation", "Binary"] {
            for code in ["_id", "_text", "_lastUpdated"] {
                assert!(
                    tables.search_param(resource_type, code).is_some(),
                    "{resource_type}.{code}"
                );
            }
        }
    }
    assert_eq!(
        R5.search_param("Observation", "_text")
            .map(|param| param.kind),
        Some(SearchParamKind::Special)
    );
    assert_eq!(
        R5.search_param("Binary", "_text").map(|param| param.kind),
        Some(SearchParamKind::String)
    );
    assert_eq!(R4.search_param("Observation", "nonsense"), None);
}

/// The index answers as the binary searches over the sorted tables it indexes, for every
/// type and code of every version, for result parameters that are no search parameter, and
/// for names the tables do not know.
#[test]
fn the_index_answers_as_the_tables() {
    for tables in [&R4, &R4B, &R5] {
        let mut types: Vec<&str> = tables.resource_types.to_vec();
        types.extend(tables.search_params.iter().map(|(name, _)| *name));
        types.extend(
            tables
                .patient_compartment
                .members
                .iter()
                .map(|(name, _)| *name),
        );
        types.extend([
            "Resource",
            "DomainResource",
            "NoSuchType",
            "observation",
            "",
        ]);
        let mut codes: Vec<&str> = tables
            .search_params
            .iter()
            .flat_map(|(_, params)| params.iter().map(|param| param.code))
            .collect();
        codes.extend(["_count", "_sort", "_include", "nonsense", "", "Code"]);
        codes.sort_unstable();
        codes.dedup();
        for resource_type in &types {
            assert_eq!(
                tables.is_resource_type(resource_type),
                tables.resource_types.binary_search(resource_type).is_ok(),
                "{resource_type}"
            );
            assert_eq!(
                tables.patient_compartment_params(resource_type),
                tables.patient_compartment.params(resource_type),
                "{resource_type}"
            );
            for code in &codes {
                let indexed = tables.search_param(resource_type, code);
                let searched = tables.search_param_by_search(resource_type, code);
                assert!(
                    indexed.map(std::ptr::from_ref) == searched.map(std::ptr::from_ref),
                    "{resource_type}.{code}: {indexed:?} against {searched:?}"
                );
            }
        }
    }
}

#[test]
fn the_index_knows_the_abstract_types_as_no_resource_types() {
    let index = &*R4.index;
    for known in ["Observation", "Resource", "DomainResource"] {
        assert!(index.row(known).is_some(), "{known}");
    }
    assert!(index.row("NoSuchType").is_none());
    assert!(!R4.is_resource_type("Resource") && !R4.is_resource_type("DomainResource"));
    assert_eq!(format!("{index:?}").lines().count(), 1, "a short Debug");
}

/// Every parameter's expression, as the index holds it parsed, is what parsing its text
/// gives; a text of no parameter is parsed when asked, by the same parser.
#[test]
fn the_index_holds_each_expression_as_the_parser_reads_it() {
    for tables in [&R4, &R4B, &R5] {
        let mut checked = 0;
        for (_, params) in tables.search_params {
            for text in params.iter().filter_map(|param| param.expression) {
                let indexed = tables.expression(text);
                assert!(
                    matches!(indexed, Ok(Cow::Borrowed(_)) | Err(_)),
                    "{text}: parsed when asked, not held"
                );
                assert_eq!(
                    indexed.map(Cow::into_owned),
                    Expression::parse(text),
                    "{text}"
                );
                checked += 1;
            }
        }
        assert!(checked > 1_000, "{checked} expressions");
    }
    let unlisted = "Observation.subject.where(resolve() is Group)";
    assert!(matches!(R4.expression(unlisted), Ok(Cow::Owned(_))));
    assert_eq!(
        R4.expression(unlisted).map(Cow::into_owned),
        Expression::parse(unlisted)
    );
    assert_eq!(
        R4.expression("Observation.subject.first()")
            .map(Cow::into_owned),
        Expression::parse("Observation.subject.first()")
    );
    assert!(R4.expression("Observation.subject.first()").is_err());
}

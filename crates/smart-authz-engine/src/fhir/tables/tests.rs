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

//! The FHIRPath subset used by compartment and search parameter expressions.
//!
//! Supported (FHIRPath N1, restricted to what the R4/R4B/R5 `SearchParameter.expression`s of
//! compartment links and token/string/reference/uri parameters use):
//!
//! - paths `Type.a.b.c`, whose first identifier names the resource type (`Resource` matches
//!   every resource); a lower-case first identifier is a child of the resource, as FHIRPath
//!   resolves it (R5 `Observation.value-string` is written `value.ofType(string)`);
//! - unions `a | b` and parentheses `(a as T).b`;
//! - type filters `x as T`, `x.as(T)`, `x.ofType(T)`; a step immediately followed by one also
//!   reads the choice element `name[x]` (`value.ofType(string)` reads `valueString`), and only
//!   then: without a type filter `subject` never reads a made-up `subjectReference`. A resource
//!   giving such an element more than once (`value` beside `valueString`, or two choices), or
//!   only bare (`value` alone: FHIR JSON names a choice's type), is read every way, and
//!   [`Expression::evaluate_checked`] refuses it;
//! - `x.where(resolve() is T)` on literal references and `x.where(field = 'literal')`.
//!
//! Everything else is refused with [`FhirPathError::Unsupported`] at parse time, so a caller
//! can never act on a half-understood expression.

use serde_json::{Map, Value};

use super::reference::parse_reference;

/// Deepest parenthesis nesting accepted; the data nests at most once.
const MAX_NESTING: usize = 16;

/// A parsed expression.
#[derive(Clone, Debug, PartialEq)]
pub struct Expression {
    /// The branches of the top-level union.
    branches: Vec<Path>,
}

/// One branch: a start and the steps applied to it, left to right.
#[derive(Clone, Debug, PartialEq)]
struct Path {
    start: Start,
    steps: Vec<Step>,
}

#[derive(Clone, Debug, PartialEq)]
enum Start {
    /// The resource itself when its type is this one (`Resource` matches every type).
    ResourceOfType(Box<str>),
    /// The resource whatever its type (the path starts with a child name).
    AnyResource,
    /// A parenthesised union evaluated on the resource.
    Group(Vec<Path>),
}

#[derive(Clone, Debug, PartialEq)]
enum Step {
    /// `.name`, flattening arrays. With `choice` (the step is immediately followed by a type
    /// filter), an absent `name` falls back to the choice element `name[x]` (`value` ->
    /// `valueString`).
    Child { name: Box<str>, choice: bool },
    /// `as T`, `.as(T)`, `.ofType(T)`.
    OfType(Box<str>),
    /// `.where(resolve() is T)`.
    WhereResolvesTo(Box<str>),
    /// `.where(field = 'literal')`.
    WhereEquals { field: Box<str>, literal: Box<str> },
}

/// A node an expression selected: a JSON value and, when it was reached through a choice
/// element (`value[x]` stored as `valueCodeableConcept`), the type suffix.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Node<'a> {
    pub value: &'a Value,
    pub type_name: Option<&'a str>,
}

/// An expression outside the supported subset, or malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FhirPathError {
    #[error("unsupported FHIRPath in {expression:?}: {detail}")]
    Unsupported { expression: String, detail: String },
}

impl Expression {
    /// Parses `text`, refusing anything outside the subset described in the module docs.
    pub fn parse(text: &str) -> Result<Self, FhirPathError> {
        let mut parser = Parser {
            text,
            bytes: text.as_bytes(),
            position: 0,
        };
        parser
            .expression()
            .map(|branches| Expression { branches })
            .map_err(|detail| FhirPathError::Unsupported {
                expression: text.to_owned(),
                detail,
            })
    }

    /// Evaluates the expression on a resource, in document order within each branch and
    /// branch after branch (duplicates across branches are kept). An element given more than
    /// once (see [`Expression::evaluate_checked`]) contributes every spelling.
    pub fn evaluate<'a>(&self, resource: &'a Value) -> Vec<Node<'a>> {
        self.evaluate_tracking(resource).0
    }

    /// [`Expression::evaluate`], refusing a resource that gives an element the expression
    /// reads more than once: as itself and as a choice element (`reported` beside
    /// `reportedReference`), or as two choice elements (`valueString` beside
    /// `valueQuantity`). FHIR allows one (R4 formats.html §2.6.2.2); servers differ in which
    /// they keep (a lenient parser drops the unknown `reported`), so no reading of such a
    /// resource can be trusted to be the server's.
    pub fn evaluate_checked<'a>(
        &self,
        resource: &'a Value,
    ) -> Result<Vec<Node<'a>>, AmbiguousElement<'a>> {
        match self.evaluate_tracking(resource) {
            (_, Some(ambiguous)) => Err(ambiguous),
            (nodes, None) => Ok(nodes),
        }
    }

    /// [`Expression::evaluate_checked`], keeping the references a `where(resolve() is T)`
    /// would drop: those this service cannot read as `T/id` (`patient/456`, `/Patient/456`)
    /// but a FHIR server may, for a check that every reference the path reaches is one
    /// this service reads.
    pub fn evaluate_unresolved<'a>(
        &self,
        resource: &'a Value,
    ) -> Result<Vec<Node<'a>>, AmbiguousElement<'a>> {
        let mut ambiguous = None;
        let nodes = self.evaluate_with(resource, Resolve::Skip, &mut ambiguous);
        match ambiguous {
            Some(ambiguous) => Err(ambiguous),
            None => Ok(nodes),
        }
    }

    fn evaluate_tracking<'a>(
        &self,
        resource: &'a Value,
    ) -> (Vec<Node<'a>>, Option<AmbiguousElement<'a>>) {
        let mut ambiguous = None;
        let nodes = self.evaluate_with(resource, Resolve::Filter, &mut ambiguous);
        (nodes, ambiguous)
    }

    fn evaluate_with<'a>(
        &self,
        resource: &'a Value,
        resolve: Resolve,
        ambiguous: &mut Option<AmbiguousElement<'a>>,
    ) -> Vec<Node<'a>> {
        let mut out = Vec::new();
        let resource_type = resource.get("resourceType").and_then(Value::as_str);
        for path in &self.branches {
            evaluate_path(path, resource, resource_type, resolve, &mut out, ambiguous);
        }
        out
    }
}

/// What `where(resolve() is T)` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Resolve {
    /// Keeps the references that resolve to `T` (FHIRPath).
    Filter,
    /// Keeps every node ([`Expression::evaluate_unresolved`]).
    Skip,
}

/// An element a resource gives more than once (`first` and `second` are two of its keys),
/// or a choice element given without its type (`first` and `second` are that key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AmbiguousElement<'a> {
    pub first: &'a str,
    pub second: &'a str,
}

impl std::fmt::Display for AmbiguousElement<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first == self.second {
            write!(
                formatter,
                "the choice element {:?} is given without its type",
                self.first
            )
        } else {
            write!(
                formatter,
                "the element {:?} is also given as {:?}",
                self.first, self.second
            )
        }
    }
}

impl std::error::Error for AmbiguousElement<'_> {}

// ---------------------------------------------------------------------------------------
// Evaluation

fn evaluate_path<'a>(
    path: &Path,
    resource: &'a Value,
    resource_type: Option<&str>,
    resolve: Resolve,
    out: &mut Vec<Node<'a>>,
    ambiguous: &mut Option<AmbiguousElement<'a>>,
) {
    let mut current = Vec::new();
    match &path.start {
        Start::ResourceOfType(type_name) => {
            if !root_type_matches(type_name, resource_type) {
                return;
            }
            current.push(Node {
                value: resource,
                type_name: None,
            });
        }
        Start::AnyResource => {
            if resource_type.is_none() {
                return;
            }
            current.push(Node {
                value: resource,
                type_name: None,
            });
        }
        Start::Group(branches) => {
            for branch in branches {
                evaluate_path(
                    branch,
                    resource,
                    resource_type,
                    resolve,
                    &mut current,
                    ambiguous,
                );
            }
        }
    }
    let mut next = Vec::new();
    for step in &path.steps {
        if current.is_empty() {
            return;
        }
        next.clear();
        for node in &current {
            apply_step(step, *node, resolve, &mut next, ambiguous);
        }
        std::mem::swap(&mut current, &mut next);
    }
    out.append(&mut current);
}

fn root_type_matches(root: &str, resource_type: Option<&str>) -> bool {
    let Some(resource_type) = resource_type else {
        return false;
    };
    match root {
        "Resource" => true,
        "DomainResource" => !matches!(resource_type, "Bundle" | "Binary" | "Parameters"),
        _ => root == resource_type,
    }
}

fn apply_step<'a>(
    step: &Step,
    node: Node<'a>,
    resolve: Resolve,
    out: &mut Vec<Node<'a>>,
    ambiguous: &mut Option<AmbiguousElement<'a>>,
) {
    match step {
        Step::Child { name, choice } => {
            if let Value::Object(object) = node.value {
                push_children(object, name, *choice, out, ambiguous);
            }
        }
        Step::OfType(type_name) => {
            if is_of_type(node, type_name) {
                out.push(node);
            }
        }
        Step::WhereResolvesTo(type_name) => {
            if resolve == Resolve::Skip || resolves_to(node.value, type_name) {
                out.push(node);
            }
        }
        Step::WhereEquals { field, literal } => {
            if child_equals(node.value, field, literal) {
                out.push(node);
            }
        }
    }
}

/// Pushes the child `name` of `object`, flattened; with `choice`, also the choice elements
/// (`name` + a FHIR type name). More than one of these is recorded in `ambiguous`.
fn push_children<'a>(
    object: &'a Map<String, Value>,
    name: &str,
    choice: bool,
    out: &mut Vec<Node<'a>>,
    ambiguous: &mut Option<AmbiguousElement<'a>>,
) {
    let mut first: Option<&'a str> = None;
    if let Some((key, child)) = object.get_key_value(name) {
        push_flattened(child, None, out);
        first = Some(key);
    }
    if !choice {
        return;
    }
    for (key, child) in object {
        if let Some(type_name) = choice_suffix(key, name) {
            push_flattened(child, Some(type_name), out);
            match first {
                None => first = Some(key),
                Some(first) => {
                    ambiguous.get_or_insert(AmbiguousElement { first, second: key });
                }
            }
        }
    }
    // Only the bare `name`, where the element is a choice (`value[x]`): FHIR JSON always
    // names its type (`valueCodeableConcept`), so a server drops the bare one or reads it
    // its own way. Read, but refused by the checked evaluation, as a second spelling is.
    if let Some(bare) = first.filter(|&key| key == name) {
        ambiguous.get_or_insert(AmbiguousElement {
            first: bare,
            second: bare,
        });
    }
}

fn push_flattened<'a>(value: &'a Value, type_name: Option<&'a str>, out: &mut Vec<Node<'a>>) {
    match value {
        Value::Null => {}
        Value::Array(items) => out.extend(items.iter().filter(|item| !item.is_null()).map(
            |item| Node {
                value: item,
                type_name,
            },
        )),
        _ => out.push(Node { value, type_name }),
    }
}

/// The type suffix of `key` when it is the choice element `name[x]`, e.g.
/// `("valueQuantity", "value") -> "Quantity"`. Only FHIR data type names count, so an
/// element such as `classHistory` is never taken for `class[x]`.
fn choice_suffix<'a>(key: &'a str, name: &str) -> Option<&'a str> {
    let suffix = key.strip_prefix(name)?;
    if !suffix.starts_with(|first: char| first.is_ascii_uppercase()) {
        return None;
    }
    CHOICE_TYPE_SUFFIXES.contains(&suffix).then_some(suffix)
}

/// FHIR data types as they appear in choice element names (R4, R4B, R5).
const CHOICE_TYPE_SUFFIXES: &[&str] = &[
    "Address",
    "Age",
    "Annotation",
    "Attachment",
    "Availability",
    "Base64Binary",
    "Boolean",
    "Canonical",
    "Code",
    "CodeableConcept",
    "CodeableReference",
    "Coding",
    "ContactDetail",
    "ContactPoint",
    "Contributor",
    "Count",
    "DataRequirement",
    "Date",
    "DateTime",
    "Decimal",
    "Distance",
    "Dosage",
    "Duration",
    "Expression",
    "ExtendedContactDetail",
    "HumanName",
    "Id",
    "Identifier",
    "Instant",
    "Integer",
    "Integer64",
    "Markdown",
    "Meta",
    "Money",
    "Oid",
    "ParameterDefinition",
    "Period",
    "PositiveInt",
    "Quantity",
    "Range",
    "Ratio",
    "RatioRange",
    "Reference",
    "RelatedArtifact",
    "SampledData",
    "Signature",
    "String",
    "Time",
    "Timing",
    "TriggerDefinition",
    "UnsignedInt",
    "Uri",
    "Url",
    "UsageContext",
    "Uuid",
    "VirtualServiceDetail",
];

/// Codes of `ContactPoint.system`; an Identifier's system is a URI, never one of these.
pub(crate) const CONTACT_POINT_SYSTEMS: &[&str] =
    &["phone", "fax", "email", "pager", "url", "sms", "other"];

/// True when `node` is of FHIR type `wanted`: by its choice suffix when it has one, else
/// structurally for the common types; anything undecidable is dropped (fail closed).
fn is_of_type(node: Node<'_>, wanted: &str) -> bool {
    if let Some(actual) = node.type_name {
        return same_type_name(actual, wanted);
    }
    let value = node.value;
    match wanted {
        "string" | "code" | "uri" | "url" | "canonical" | "markdown" | "id" | "oid" | "uuid"
        | "base64Binary" | "date" | "dateTime" | "instant" | "time" | "String" => value.is_string(),
        "boolean" | "Boolean" => value.is_boolean(),
        "integer" | "positiveInt" | "unsignedInt" | "integer64" | "Integer" => {
            value.is_i64() || value.is_u64()
        }
        "decimal" | "Decimal" => value.is_number(),
        _ => {
            let Value::Object(object) = value else {
                return false;
            };
            is_object_of_type(object, wanted)
        }
    }
}

fn is_object_of_type(object: &Map<String, Value>, wanted: &str) -> bool {
    let has = |key: &str| object.contains_key(key);
    match wanted {
        "Reference" => {
            (has("reference") || has("identifier") || has("display"))
                && !has("code")
                && !has("system")
                && !has("coding")
        }
        "CodeableConcept" => {
            has("coding")
                || (has("text")
                    && object
                        .keys()
                        .all(|key| matches!(key.as_str(), "text" | "id" | "extension")))
        }
        "Coding" => (has("system") || has("code")) && !has("coding") && !has("value"),
        "Identifier" => {
            (object.get("value").is_some_and(Value::is_string) || has("system"))
                && !has("code")
                && !has("coding")
                && !is_contact_point_system(object)
        }
        "ContactPoint" => {
            object.get("value").is_some_and(Value::is_string)
                && !has("code")
                && (!has("system") || is_contact_point_system(object))
        }
        "Quantity" | "Age" | "Duration" | "Distance" | "Count" | "SimpleQuantity"
        | "MoneyQuantity" => object.get("value").is_some_and(Value::is_number),
        "Period" => (has("start") || has("end")) && !has("resourceType"),
        "Range" => (has("low") || has("high")) && !has("resourceType"),
        _ if wanted.starts_with(|first: char| first.is_ascii_uppercase()) => {
            // A resource type, e.g. a contained or inline resource.
            object.get("resourceType").and_then(Value::as_str) == Some(wanted)
        }
        _ => false,
    }
}

fn is_contact_point_system(object: &Map<String, Value>) -> bool {
    object
        .get("system")
        .and_then(Value::as_str)
        .is_some_and(|system| CONTACT_POINT_SYSTEMS.contains(&system))
}

/// `String` vs `string`: equal ignoring the case of the first letter only.
fn same_type_name(actual: &str, wanted: &str) -> bool {
    let (Some(first_actual), Some(first_wanted)) = (actual.chars().next(), wanted.chars().next())
    else {
        return false;
    };
    first_actual.eq_ignore_ascii_case(&first_wanted)
        && actual[first_actual.len_utf8()..] == wanted[first_wanted.len_utf8()..]
}

/// True when `value` is a Reference whose literal `reference` names a resource of
/// `type_name`; contained, `urn:` and identifier-only references never resolve.
fn resolves_to(value: &Value, type_name: &str) -> bool {
    value
        .get("reference")
        .and_then(Value::as_str)
        .and_then(parse_reference)
        .is_some_and(|(resource_type, _)| resource_type == type_name)
}

/// FHIRPath `field = 'literal'`: true only when `field` is exactly one string equal to
/// `literal` (a collection of several items never equals a single string).
fn child_equals(value: &Value, field: &str, literal: &str) -> bool {
    let Value::Object(object) = value else {
        return false;
    };
    let mut children = Vec::new();
    push_children(object, field, false, &mut children, &mut None);
    matches!(children.as_slice(), [only] if only.value.as_str() == Some(literal))
}

// ---------------------------------------------------------------------------------------
// Parsing

/// Appends the type filter `type_name` to `path`, letting the step it filters read a choice
/// element: the child step right before it, or the last child step of each branch of a
/// parenthesised union it directly follows (`(a.value | b.value).ofType(T)`).
fn push_type_filter(path: &mut Path, type_name: Box<str>) {
    match (path.steps.last_mut(), &mut path.start) {
        (Some(step), _) => allow_choice(step),
        (None, Start::Group(branches)) => allow_choice_in_branches(branches),
        (None, _) => {}
    }
    path.steps.push(Step::OfType(type_name));
}

fn allow_choice(step: &mut Step) {
    if let Step::Child { choice, .. } = step {
        *choice = true;
    }
}

fn allow_choice_in_branches(branches: &mut [Path]) {
    for branch in branches {
        match (branch.steps.last_mut(), &mut branch.start) {
            (Some(step), _) => allow_choice(step),
            (None, Start::Group(inner)) => allow_choice_in_branches(inner),
            (None, _) => {}
        }
    }
}

struct Parser<'t> {
    text: &'t str,
    bytes: &'t [u8],
    position: usize,
}

type ParseResult<T> = Result<T, String>;

impl<'t> Parser<'t> {
    fn expression(&mut self) -> ParseResult<Vec<Path>> {
        let branches = self.union(0)?;
        self.skip_whitespace();
        if self.position < self.bytes.len() {
            return Err(self.unexpected("end of expression"));
        }
        Ok(branches)
    }

    /// `typed ('|' typed)*`
    fn union(&mut self, depth: usize) -> ParseResult<Vec<Path>> {
        let mut branches = vec![self.typed(depth)?];
        loop {
            self.skip_whitespace();
            if self.peek() == Some(b'|') {
                self.position += 1;
                branches.push(self.typed(depth)?);
            } else {
                return Ok(branches);
            }
        }
    }

    /// `postfix ('as' TypeName)*`
    fn typed(&mut self, depth: usize) -> ParseResult<Path> {
        let mut path = self.postfix(depth)?;
        loop {
            self.skip_whitespace();
            let Some(word) = self.peek_identifier() else {
                return Ok(path);
            };
            match word {
                "as" => {
                    self.position += word.len();
                    self.skip_whitespace();
                    let type_name = self.type_specifier()?;
                    push_type_filter(&mut path, type_name);
                }
                "is" => {
                    return Err(
                        "the `is` operator is only supported as where(resolve() is T)".into(),
                    );
                }
                _ => return Err(format!("operator `{word}` is not supported")),
            }
        }
    }

    /// `primary ('.' invocation)*`
    fn postfix(&mut self, depth: usize) -> ParseResult<Path> {
        self.skip_whitespace();
        let mut path = match self.peek() {
            Some(b'(') => {
                if depth >= MAX_NESTING {
                    return Err("parentheses nested too deeply".into());
                }
                self.position += 1;
                let branches = self.union(depth + 1)?;
                self.skip_whitespace();
                self.expect(b')')?;
                Path {
                    start: Start::Group(branches),
                    steps: Vec::new(),
                }
            }
            _ => {
                let name = self.identifier()?;
                self.reject_call_or_index(name)?;
                if name.starts_with(|first: char| first.is_ascii_uppercase()) {
                    Path {
                        start: Start::ResourceOfType(name.into()),
                        steps: Vec::new(),
                    }
                } else {
                    Path {
                        start: Start::AnyResource,
                        steps: vec![Step::Child {
                            name: name.into(),
                            choice: false,
                        }],
                    }
                }
            }
        };
        loop {
            self.skip_whitespace();
            match self.peek() {
                Some(b'.') => {
                    self.position += 1;
                    self.skip_whitespace();
                    match self.invocation()? {
                        Step::OfType(type_name) => push_type_filter(&mut path, type_name),
                        step => path.steps.push(step),
                    }
                }
                Some(b'[') => return Err("indexers ([n]) are not supported".into()),
                _ => return Ok(path),
            }
        }
    }

    /// `name` or `function(arguments)` after a dot.
    fn invocation(&mut self) -> ParseResult<Step> {
        let name = self.identifier()?;
        self.skip_whitespace();
        if self.peek() != Some(b'(') {
            if self.peek() == Some(b'[') {
                return Err("indexers ([n]) are not supported".into());
            }
            return Ok(Step::Child {
                name: name.into(),
                choice: false,
            });
        }
        self.position += 1;
        self.skip_whitespace();
        let step = match name {
            "as" | "ofType" => Step::OfType(self.type_specifier()?),
            "where" => self.where_criteria()?,
            _ => return Err(format!("function {name}() is not supported")),
        };
        self.skip_whitespace();
        self.expect(b')')?;
        Ok(step)
    }

    /// The inside of `where(...)`: `resolve() is T` or `field = 'literal'`.
    fn where_criteria(&mut self) -> ParseResult<Step> {
        let name = self.identifier()?;
        self.skip_whitespace();
        if name == "resolve" {
            self.expect(b'(')?;
            self.skip_whitespace();
            self.expect(b')')?;
            self.skip_whitespace();
            if self.peek_identifier() != Some("is") {
                return Err("resolve() is only supported as where(resolve() is T)".into());
            }
            self.position += 2;
            self.skip_whitespace();
            return Ok(Step::WhereResolvesTo(self.type_specifier()?));
        }
        match self.peek() {
            Some(b'=') => {
                self.position += 1;
                self.skip_whitespace();
                let literal = self.string_literal()?;
                Ok(Step::WhereEquals {
                    field: name.into(),
                    literal: literal.into(),
                })
            }
            Some(b'(') => Err(format!("function {name}() is not supported inside where()")),
            _ => Err(format!(
                "where() supports only resolve() is T and field = 'literal', found {name:?} followed by {}",
                self.describe_here()
            )),
        }
    }

    /// A type name, optionally qualified with `FHIR.` or `System.`.
    fn type_specifier(&mut self) -> ParseResult<Box<str>> {
        let mut name = self.identifier()?;
        if matches!(name, "FHIR" | "System") && self.peek() == Some(b'.') {
            self.position += 1;
            name = self.identifier()?;
        }
        if self.peek() == Some(b'.') {
            return Err(format!("qualified type name after {name} is not supported"));
        }
        Ok(name.into())
    }

    fn reject_call_or_index(&mut self, name: &str) -> ParseResult<()> {
        self.skip_whitespace();
        match self.peek() {
            Some(b'(') => Err(format!(
                "function {name}() is not supported at the start of a path"
            )),
            Some(b'[') => Err("indexers ([n]) are not supported".into()),
            _ => Ok(()),
        }
    }

    /// `[A-Za-z_][A-Za-z0-9_]*`; delimited (backtick) identifiers are not supported.
    fn identifier(&mut self) -> ParseResult<&'t str> {
        match self.peek_identifier() {
            Some(name) => {
                self.position += name.len();
                Ok(name)
            }
            None => Err(self.unexpected("an identifier")),
        }
    }

    fn peek_identifier(&self) -> Option<&'t str> {
        let rest = &self.bytes[self.position..];
        if !rest
            .first()
            .is_some_and(|byte| byte.is_ascii_alphabetic() || *byte == b'_')
        {
            return None;
        }
        let length = rest
            .iter()
            .position(|byte| !(byte.is_ascii_alphanumeric() || *byte == b'_'))
            .unwrap_or(rest.len());
        // ASCII bytes only, so both ends are char boundaries.
        Some(&self.text[self.position..self.position + length])
    }

    /// `'...'` with FHIRPath escapes.
    fn string_literal(&mut self) -> ParseResult<String> {
        self.expect(b'\'')?;
        let mut literal = String::new();
        let mut chars = self.text[self.position..].char_indices();
        while let Some((offset, character)) = chars.next() {
            match character {
                '\'' => {
                    self.position += offset + 1;
                    return Ok(literal);
                }
                '\\' => {
                    let escaped = match chars.next().map(|(_, escaped)| escaped) {
                        Some(escaped @ ('\'' | '"' | '`' | '\\' | '/')) => escaped,
                        Some('n') => '\n',
                        Some('r') => '\r',
                        Some('t') => '\t',
                        Some('f') => '\u{c}',
                        Some(other) => {
                            return Err(format!(
                                "escape \\{other} in a string literal is not supported"
                            ));
                        }
                        None => break,
                    };
                    literal.push(escaped);
                }
                _ => literal.push(character),
            }
        }
        Err("unterminated string literal".into())
    }

    fn expect(&mut self, byte: u8) -> ParseResult<()> {
        if self.peek() == Some(byte) {
            self.position += 1;
            Ok(())
        } else {
            Err(self.unexpected(&format!("{:?}", byte as char)))
        }
    }

    fn skip_whitespace(&mut self) {
        while self.peek().is_some_and(|byte| byte.is_ascii_whitespace()) {
            self.position += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.position).copied()
    }

    fn describe_here(&self) -> String {
        match self
            .text
            .get(self.position..)
            .and_then(|rest| rest.chars().next())
        {
            Some(character) => format!("{character:?} at offset {}", self.position),
            None => "end of expression".to_owned(),
        }
    }

    fn unexpected(&self, expected: &str) -> String {
        let found = self.describe_here();
        match self.peek() {
            Some(b'=' | b'!' | b'<' | b'>' | b'+' | b'-' | b'*' | b'/' | b'&' | b'~') => {
                format!("operators are not supported: found {found}, expected {expected}")
            }
            _ => format!("expected {expected}, found {found}"),
        }
    }
}

#[cfg(test)]
mod tests;

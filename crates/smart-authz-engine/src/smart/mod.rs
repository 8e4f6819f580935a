//! The SMART App Launch 2.2 scope model ("Scopes and Launch Context", §3.0.2): the grammar
//! of one scope, the set of scopes a token was granted, and the launch context of a token.
//! Pure: no I/O.

pub mod context;
pub mod permissions;
pub mod scope;
pub mod scope_set;

pub use context::{ClaimsError, ScopeClaim, TokenContext};
pub use permissions::{Permission, Permissions};
pub use scope::{
    FilterItem, QueryError, ResourceScope, ResourceSelector, Scope, ScopeContext, ScopeError,
    parse_scope,
};
pub use scope_set::{ScopeEntry, ScopeSet};

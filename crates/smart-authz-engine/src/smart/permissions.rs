//! The permission letters of a SMART v2 resource scope, `c r u d s` (§3.0.2).

use std::fmt;

use serde::{Serialize, Serializer};

/// One permission letter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Permission {
    Create,
    Read,
    Update,
    Delete,
    Search,
}

impl Permission {
    /// Canonical order of the letters: a valid v2 permission string is a subsequence of it.
    pub const ORDER: [Permission; 5] = [
        Permission::Create,
        Permission::Read,
        Permission::Update,
        Permission::Delete,
        Permission::Search,
    ];

    pub fn letter(self) -> char {
        match self {
            Permission::Create => 'c',
            Permission::Read => 'r',
            Permission::Update => 'u',
            Permission::Delete => 'd',
            Permission::Search => 's',
        }
    }

    pub fn from_letter(letter: char) -> Option<Self> {
        Permission::ORDER
            .into_iter()
            .find(|permission| permission.letter() == letter)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of permission letters. Write never implies read: each letter stands alone.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Permissions(u8);

impl Permissions {
    pub const NONE: Permissions = Permissions(0);
    /// `cruds`, what the v1 `*` means.
    pub const ALL: Permissions = Permissions(0b1_1111);
    /// `rs`, what the v1 `read` means.
    pub const READ_AND_SEARCH: Permissions = Permissions(0b1_0010);

    pub fn of(permissions: &[Permission]) -> Self {
        permissions
            .iter()
            .fold(Permissions::NONE, |set, permission| set.with(*permission))
    }

    pub fn with(self, permission: Permission) -> Self {
        Permissions(self.0 | permission.bit())
    }

    pub fn contains(self, permission: Permission) -> bool {
        self.0 & permission.bit() != 0
    }

    pub fn contains_all(self, other: Permissions) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether any of `c`, `u`, `d` is in the set.
    pub fn writes(self) -> bool {
        [Permission::Create, Permission::Update, Permission::Delete]
            .into_iter()
            .any(|letter| self.contains(letter))
    }

    pub fn iter(self) -> impl Iterator<Item = Permission> {
        Permission::ORDER
            .into_iter()
            .filter(move |permission| self.contains(*permission))
    }
}

impl fmt::Display for Permissions {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.iter()
            .try_for_each(|permission| fmt::Write::write_char(formatter, permission.letter()))
    }
}

impl fmt::Debug for Permissions {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "Permissions({self})")
    }
}

impl Serialize for Permissions {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests;

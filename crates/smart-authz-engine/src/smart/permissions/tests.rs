use super::*;

#[test]
fn displays_letters_in_canonical_order() {
    let set = Permissions::of(&[Permission::Search, Permission::Read, Permission::Create]);
    assert_eq!(set.to_string(), "crs");
    assert_eq!(Permissions::ALL.to_string(), "cruds");
    assert_eq!(Permissions::NONE.to_string(), "");
}

#[test]
fn each_letter_stands_alone() {
    let write = Permissions::of(&[Permission::Create, Permission::Update, Permission::Delete]);
    assert!(!write.contains(Permission::Read));
    assert!(Permissions::ALL.contains_all(write));
    assert!(!write.contains_all(Permissions::ALL));
}

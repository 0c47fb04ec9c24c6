//! The 115 real DAP table schemas, embedded so the fake serves them from any directory.
//!
//! Each entry is the exact envelope the schema endpoint returns: `{"schema": S, "version": N}`.
//! The list is generated from `tests/fixtures/schemas/<namespace>/<table>.json`; regenerate it when
//! a fixture is added.

/// `(namespace, table, envelope JSON)` for every fixture, sorted by namespace and table.
#[rustfmt::skip] // One generated line per fixture.
pub(super) const FIXTURES: &[(&str, &str, &str)] = &[
    ("canvas", "abstract_courses", include_str!("../../tests/fixtures/schemas/canvas/abstract_courses.json")),
    ("canvas", "access_tokens", include_str!("../../tests/fixtures/schemas/canvas/access_tokens.json")),
    ("canvas", "account_users", include_str!("../../tests/fixtures/schemas/canvas/account_users.json")),
    ("canvas", "accounts", include_str!("../../tests/fixtures/schemas/canvas/accounts.json")),
    ("canvas", "appointment_groups", include_str!("../../tests/fixtures/schemas/canvas/appointment_groups.json")),
    ("canvas", "assessment_question_banks", include_str!("../../tests/fixtures/schemas/canvas/assessment_question_banks.json")),
    ("canvas", "assessment_questions", include_str!("../../tests/fixtures/schemas/canvas/assessment_questions.json")),
    ("canvas", "assessment_requests", include_str!("../../tests/fixtures/schemas/canvas/assessment_requests.json")),
    ("canvas", "asset_user_accesses", include_str!("../../tests/fixtures/schemas/canvas/asset_user_accesses.json")),
    ("canvas", "assignment_groups", include_str!("../../tests/fixtures/schemas/canvas/assignment_groups.json")),
    ("canvas", "assignment_override_students", include_str!("../../tests/fixtures/schemas/canvas/assignment_override_students.json")),
    ("canvas", "assignment_overrides", include_str!("../../tests/fixtures/schemas/canvas/assignment_overrides.json")),
    ("canvas", "assignments", include_str!("../../tests/fixtures/schemas/canvas/assignments.json")),
    ("canvas", "attachment_associations", include_str!("../../tests/fixtures/schemas/canvas/attachment_associations.json")),
    ("canvas", "attachments", include_str!("../../tests/fixtures/schemas/canvas/attachments.json")),
    ("canvas", "authentication_providers", include_str!("../../tests/fixtures/schemas/canvas/authentication_providers.json")),
    ("canvas", "calendar_events", include_str!("../../tests/fixtures/schemas/canvas/calendar_events.json")),
    ("canvas", "canvadocs_annotation_contexts", include_str!("../../tests/fixtures/schemas/canvas/canvadocs_annotation_contexts.json")),
    ("canvas", "cloned_items", include_str!("../../tests/fixtures/schemas/canvas/cloned_items.json")),
    ("canvas", "comment_bank_items", include_str!("../../tests/fixtures/schemas/canvas/comment_bank_items.json")),
    ("canvas", "communication_channels", include_str!("../../tests/fixtures/schemas/canvas/communication_channels.json")),
    ("canvas", "content_exports", include_str!("../../tests/fixtures/schemas/canvas/content_exports.json")),
    ("canvas", "content_migrations", include_str!("../../tests/fixtures/schemas/canvas/content_migrations.json")),
    ("canvas", "content_participation_counts", include_str!("../../tests/fixtures/schemas/canvas/content_participation_counts.json")),
    ("canvas", "content_participations", include_str!("../../tests/fixtures/schemas/canvas/content_participations.json")),
    ("canvas", "content_shares", include_str!("../../tests/fixtures/schemas/canvas/content_shares.json")),
    ("canvas", "content_tags", include_str!("../../tests/fixtures/schemas/canvas/content_tags.json")),
    ("canvas", "context_external_tools", include_str!("../../tests/fixtures/schemas/canvas/context_external_tools.json")),
    ("canvas", "context_module_progressions", include_str!("../../tests/fixtures/schemas/canvas/context_module_progressions.json")),
    ("canvas", "context_modules", include_str!("../../tests/fixtures/schemas/canvas/context_modules.json")),
    ("canvas", "conversation_message_participants", include_str!("../../tests/fixtures/schemas/canvas/conversation_message_participants.json")),
    ("canvas", "conversation_messages", include_str!("../../tests/fixtures/schemas/canvas/conversation_messages.json")),
    ("canvas", "conversation_participants", include_str!("../../tests/fixtures/schemas/canvas/conversation_participants.json")),
    ("canvas", "conversations", include_str!("../../tests/fixtures/schemas/canvas/conversations.json")),
    ("canvas", "course_account_associations", include_str!("../../tests/fixtures/schemas/canvas/course_account_associations.json")),
    ("canvas", "course_sections", include_str!("../../tests/fixtures/schemas/canvas/course_sections.json")),
    ("canvas", "courses", include_str!("../../tests/fixtures/schemas/canvas/courses.json")),
    ("canvas", "custom_gradebook_column_data", include_str!("../../tests/fixtures/schemas/canvas/custom_gradebook_column_data.json")),
    ("canvas", "custom_gradebook_columns", include_str!("../../tests/fixtures/schemas/canvas/custom_gradebook_columns.json")),
    ("canvas", "developer_key_account_bindings", include_str!("../../tests/fixtures/schemas/canvas/developer_key_account_bindings.json")),
    ("canvas", "developer_keys", include_str!("../../tests/fixtures/schemas/canvas/developer_keys.json")),
    ("canvas", "discussion_entries", include_str!("../../tests/fixtures/schemas/canvas/discussion_entries.json")),
    ("canvas", "discussion_entry_participants", include_str!("../../tests/fixtures/schemas/canvas/discussion_entry_participants.json")),
    ("canvas", "discussion_topic_participants", include_str!("../../tests/fixtures/schemas/canvas/discussion_topic_participants.json")),
    ("canvas", "discussion_topics", include_str!("../../tests/fixtures/schemas/canvas/discussion_topics.json")),
    ("canvas", "enrollment_dates_overrides", include_str!("../../tests/fixtures/schemas/canvas/enrollment_dates_overrides.json")),
    ("canvas", "enrollment_states", include_str!("../../tests/fixtures/schemas/canvas/enrollment_states.json")),
    ("canvas", "enrollment_terms", include_str!("../../tests/fixtures/schemas/canvas/enrollment_terms.json")),
    ("canvas", "enrollments", include_str!("../../tests/fixtures/schemas/canvas/enrollments.json")),
    ("canvas", "eportfolios", include_str!("../../tests/fixtures/schemas/canvas/eportfolios.json")),
    ("canvas", "epub_exports", include_str!("../../tests/fixtures/schemas/canvas/epub_exports.json")),
    ("canvas", "external_feeds", include_str!("../../tests/fixtures/schemas/canvas/external_feeds.json")),
    ("canvas", "favorites", include_str!("../../tests/fixtures/schemas/canvas/favorites.json")),
    ("canvas", "folders", include_str!("../../tests/fixtures/schemas/canvas/folders.json")),
    ("canvas", "gradebook_uploads", include_str!("../../tests/fixtures/schemas/canvas/gradebook_uploads.json")),
    ("canvas", "grading_period_groups", include_str!("../../tests/fixtures/schemas/canvas/grading_period_groups.json")),
    ("canvas", "grading_periods", include_str!("../../tests/fixtures/schemas/canvas/grading_periods.json")),
    ("canvas", "grading_standards", include_str!("../../tests/fixtures/schemas/canvas/grading_standards.json")),
    ("canvas", "group_and_membership_importers", include_str!("../../tests/fixtures/schemas/canvas/group_and_membership_importers.json")),
    ("canvas", "group_categories", include_str!("../../tests/fixtures/schemas/canvas/group_categories.json")),
    ("canvas", "group_memberships", include_str!("../../tests/fixtures/schemas/canvas/group_memberships.json")),
    ("canvas", "groups", include_str!("../../tests/fixtures/schemas/canvas/groups.json")),
    ("canvas", "late_policies", include_str!("../../tests/fixtures/schemas/canvas/late_policies.json")),
    ("canvas", "learning_outcome_groups", include_str!("../../tests/fixtures/schemas/canvas/learning_outcome_groups.json")),
    ("canvas", "learning_outcome_question_results", include_str!("../../tests/fixtures/schemas/canvas/learning_outcome_question_results.json")),
    ("canvas", "learning_outcome_results", include_str!("../../tests/fixtures/schemas/canvas/learning_outcome_results.json")),
    ("canvas", "learning_outcomes", include_str!("../../tests/fixtures/schemas/canvas/learning_outcomes.json")),
    ("canvas", "live_assessments_assessments", include_str!("../../tests/fixtures/schemas/canvas/live_assessments_assessments.json")),
    ("canvas", "live_assessments_submissions", include_str!("../../tests/fixtures/schemas/canvas/live_assessments_submissions.json")),
    ("canvas", "lti_line_items", include_str!("../../tests/fixtures/schemas/canvas/lti_line_items.json")),
    ("canvas", "lti_message_handlers", include_str!("../../tests/fixtures/schemas/canvas/lti_message_handlers.json")),
    ("canvas", "lti_resource_links", include_str!("../../tests/fixtures/schemas/canvas/lti_resource_links.json")),
    ("canvas", "lti_results", include_str!("../../tests/fixtures/schemas/canvas/lti_results.json")),
    ("canvas", "master_courses_child_content_tags", include_str!("../../tests/fixtures/schemas/canvas/master_courses_child_content_tags.json")),
    ("canvas", "master_courses_child_subscriptions", include_str!("../../tests/fixtures/schemas/canvas/master_courses_child_subscriptions.json")),
    ("canvas", "master_courses_master_content_tags", include_str!("../../tests/fixtures/schemas/canvas/master_courses_master_content_tags.json")),
    ("canvas", "master_courses_master_migrations", include_str!("../../tests/fixtures/schemas/canvas/master_courses_master_migrations.json")),
    ("canvas", "master_courses_master_templates", include_str!("../../tests/fixtures/schemas/canvas/master_courses_master_templates.json")),
    ("canvas", "master_courses_migration_results", include_str!("../../tests/fixtures/schemas/canvas/master_courses_migration_results.json")),
    ("canvas", "media_objects", include_str!("../../tests/fixtures/schemas/canvas/media_objects.json")),
    ("canvas", "moderated_grading_provisional_grades", include_str!("../../tests/fixtures/schemas/canvas/moderated_grading_provisional_grades.json")),
    ("canvas", "originality_reports", include_str!("../../tests/fixtures/schemas/canvas/originality_reports.json")),
    ("canvas", "outcome_imports", include_str!("../../tests/fixtures/schemas/canvas/outcome_imports.json")),
    ("canvas", "outcome_proficiencies", include_str!("../../tests/fixtures/schemas/canvas/outcome_proficiencies.json")),
    ("canvas", "outcome_proficiency_ratings", include_str!("../../tests/fixtures/schemas/canvas/outcome_proficiency_ratings.json")),
    ("canvas", "post_policies", include_str!("../../tests/fixtures/schemas/canvas/post_policies.json")),
    ("canvas", "pseudonyms", include_str!("../../tests/fixtures/schemas/canvas/pseudonyms.json")),
    ("canvas", "purgatories", include_str!("../../tests/fixtures/schemas/canvas/purgatories.json")),
    ("canvas", "quiz_groups", include_str!("../../tests/fixtures/schemas/canvas/quiz_groups.json")),
    ("canvas", "quiz_questions", include_str!("../../tests/fixtures/schemas/canvas/quiz_questions.json")),
    ("canvas", "quiz_statistics", include_str!("../../tests/fixtures/schemas/canvas/quiz_statistics.json")),
    ("canvas", "quiz_submissions", include_str!("../../tests/fixtures/schemas/canvas/quiz_submissions.json")),
    ("canvas", "quizzes", include_str!("../../tests/fixtures/schemas/canvas/quizzes.json")),
    ("canvas", "role_overrides", include_str!("../../tests/fixtures/schemas/canvas/role_overrides.json")),
    ("canvas", "roles", include_str!("../../tests/fixtures/schemas/canvas/roles.json")),
    ("canvas", "rubric_assessments", include_str!("../../tests/fixtures/schemas/canvas/rubric_assessments.json")),
    ("canvas", "rubric_associations", include_str!("../../tests/fixtures/schemas/canvas/rubric_associations.json")),
    ("canvas", "rubrics", include_str!("../../tests/fixtures/schemas/canvas/rubrics.json")),
    ("canvas", "score_statistics", include_str!("../../tests/fixtures/schemas/canvas/score_statistics.json")),
    ("canvas", "scores", include_str!("../../tests/fixtures/schemas/canvas/scores.json")),
    ("canvas", "sis_batches", include_str!("../../tests/fixtures/schemas/canvas/sis_batches.json")),
    ("canvas", "submission_comments", include_str!("../../tests/fixtures/schemas/canvas/submission_comments.json")),
    ("canvas", "submission_versions", include_str!("../../tests/fixtures/schemas/canvas/submission_versions.json")),
    ("canvas", "submissions", include_str!("../../tests/fixtures/schemas/canvas/submissions.json")),
    ("canvas", "usage_rights", include_str!("../../tests/fixtures/schemas/canvas/usage_rights.json")),
    ("canvas", "user_account_associations", include_str!("../../tests/fixtures/schemas/canvas/user_account_associations.json")),
    ("canvas", "user_notes", include_str!("../../tests/fixtures/schemas/canvas/user_notes.json")),
    ("canvas", "users", include_str!("../../tests/fixtures/schemas/canvas/users.json")),
    ("canvas", "versions", include_str!("../../tests/fixtures/schemas/canvas/versions.json")),
    ("canvas", "web_conference_participants", include_str!("../../tests/fixtures/schemas/canvas/web_conference_participants.json")),
    ("canvas", "web_conferences", include_str!("../../tests/fixtures/schemas/canvas/web_conferences.json")),
    ("canvas", "wiki_pages", include_str!("../../tests/fixtures/schemas/canvas/wiki_pages.json")),
    ("canvas", "wikis", include_str!("../../tests/fixtures/schemas/canvas/wikis.json")),
    ("canvas_logs", "user_agents", include_str!("../../tests/fixtures/schemas/canvas_logs/user_agents.json")),
    ("canvas_logs", "web_logs", include_str!("../../tests/fixtures/schemas/canvas_logs/web_logs.json")),
];

/// The JSON Schema of a fixture table (the `schema` member of its envelope), or `None` when there
/// is no fixture of that name.
pub fn fixture_schema(namespace: &str, table: &str) -> Option<serde_json::Value> {
    fixture_envelope(namespace, table).map(|(_, schema)| schema)
}

/// The `(namespace, table)` name of every fixture table.
pub fn fixture_tables() -> impl Iterator<Item = (&'static str, &'static str)> {
    FIXTURES
        .iter()
        .map(|&(namespace, table, _)| (namespace, table))
}

/// The version and schema of a fixture table.
pub(super) fn fixture_envelope(namespace: &str, table: &str) -> Option<(i64, serde_json::Value)> {
    let &(_, _, text) = FIXTURES
        .iter()
        .find(|&&(ns, t, _)| ns == namespace && t == table)?;
    let mut envelope: serde_json::Value = serde_json::from_str(text).ok()?;
    let version = envelope.get("version")?.as_i64()?;
    Some((version, envelope.get_mut("schema")?.take()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fixture_parses_with_a_version_and_a_key() {
        assert_eq!(fixture_tables().count(), 115);
        assert_eq!(
            fixture_tables()
                .filter(|&(ns, _)| ns == "canvas_logs")
                .count(),
            2
        );
        for (namespace, table) in fixture_tables() {
            let (version, schema) = fixture_envelope(namespace, table).unwrap();
            assert!(version >= 1, "{namespace}.{table}");
            assert!(
                schema.pointer("/properties/key/properties").is_some(),
                "{namespace}.{table}"
            );
        }
        assert!(fixture_schema("canvas", "nope").is_none());
    }
}

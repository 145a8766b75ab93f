from django.contrib import admin

from .models import ApiKey, Decision, Problem, Run


class AgentRecord:
    """What agents reported is shown, never edited here: the run's counters, the per-day counts and the
    pattern groups follow every write the API makes, and an edit in the admin would bypass them (the
    overview, the runs list's counts and the patterns answer would disagree with the rows). A run can be
    deleted (its rollups follow through the delete signals); its decisions and problems go with it."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return self.model is Run and super().has_delete_permission(request, obj)


class ProblemInline(AgentRecord, admin.TabularInline):
    model = Problem
    extra = 0
    fields = ["problem_id", "severity", "description", "decision_id"]
    show_change_link = True


@admin.register(Run)
class RunAdmin(AgentRecord, admin.ModelAdmin):
    list_display = ["run_id", "goal_id", "status", "started_at", "decision_count", "failure_count", "problem_count"]
    list_filter = ["status"]
    search_fields = ["run_id", "goal_id", "narrative"]
    date_hierarchy = "started_at"
    show_full_result_count = False
    readonly_fields = [
        "decision_count", "success_count", "failure_count", "total_tokens", "total_latency_ms", "problem_count",
        "nodes_executed", "created_at", "updated_at",
    ]
    inlines = [ProblemInline]

    def get_deleted_objects(self, objs, request):
        # A run's decisions and problems go with it, though they cannot be deleted on their own here.
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        return deleted, counts, perms_needed - {Decision._meta.verbose_name, Problem._meta.verbose_name}, protected


@admin.register(Decision)
class DecisionAdmin(AgentRecord, admin.ModelAdmin):
    list_display = ["decision_id", "run", "node_id", "intent", "chosen_option_id", "outcome_success"]
    list_filter = ["outcome_success", "decision_type"]
    search_fields = ["run__run_id", "intent", "node_id"]
    raw_id_fields = ["run"]
    show_full_result_count = False


@admin.register(Problem)
class ProblemAdmin(AgentRecord, admin.ModelAdmin):
    list_display = ["problem_id", "run", "severity", "description"]
    search_fields = ["run__run_id", "description"]
    raw_id_fields = ["run"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "lookup", "scopes", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["lookup", "digest", "created_at", "last_used_at"]
    actions = ["revoke"]

    @admin.action(description="Revoke selected keys")
    def revoke(self, request, queryset):
        for key in queryset.active():
            key.revoke()

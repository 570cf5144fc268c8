-- Prompt templates declare typed variables, and a run is given its task
-- (issue 11 §1, docs/CONTRACTS.md "Prompt templates"). A prompt-templates
-- body is now {description?, body, variables} (was {template, vars});
-- variables gain the types enum and text, max_length and values. The
-- rendered prompt of a run is stored with it (prompt.c): {template,
-- template_name, template_version, vars, rendered, rendered_sha256}.
ALTER TABLE api.runs ADD COLUMN prompt jsonb;

-- Existing items move to the new keys, keeping their state: the content an
-- approval covered is the same template with the same variables, renamed.
-- The seeded ones a tenant did not change become the new seeds (max_length,
-- descriptions, an enum). Row-level security is forced: per tenant.
DO $do$
DECLARE
    t uuid;
BEGIN
    FOR t IN SELECT id FROM api.tenants LOOP
        PERFORM set_config('paddock.tenant_id', t::text, true);
        UPDATE api.catalog_items i SET body = n.new_body
            FROM (VALUES
        ('code-review', '{"description": "Review a change set", "template": "Review the changes under {{path}}. Focus on {{focus}}. Report at most {{max_findings}} findings.", "vars": {"path": {"type": "string", "required": true}, "focus": {"type": "string", "default": "correctness and security"}, "max_findings": {"type": "integer", "default": 10}}}'::jsonb, '{"description": "Review a change set", "body": "Review the changes under {{path}}. Focus on {{focus}}. Report at most {{max_findings}} findings.", "variables": {"path": {"type": "string", "required": true, "max_length": 1024, "description": "directory or file to review, relative to the workspace"}, "focus": {"type": "string", "default": "correctness and security", "max_length": 200, "description": "what to look at first"}, "max_findings": {"type": "integer", "default": 10, "description": "most findings to report"}}}'::jsonb),
        ('fix-failing-tests', '{"description": "Make a failing test suite pass", "template": "Run {{test_command}} and fix the failures. Refactoring allowed: {{allow_refactor}}.", "vars": {"test_command": {"type": "string", "required": true}, "allow_refactor": {"type": "boolean", "default": false}}}'::jsonb, '{"description": "Make a failing test suite pass", "body": "Run {{test_command}} and fix the failures. Refactoring allowed: {{allow_refactor}}.", "variables": {"test_command": {"type": "string", "required": true, "max_length": 1024, "description": "the command that runs the tests"}, "allow_refactor": {"type": "boolean", "default": false, "description": "whether code may be restructured"}}}'::jsonb),
        ('write-docs', '{"description": "Document a module", "template": "Write reference documentation for {{module}} in {{format}}.", "vars": {"module": {"type": "string", "required": true}, "format": {"type": "string", "default": "Markdown"}}}'::jsonb, '{"description": "Document a module", "body": "Write reference documentation for {{module}} in {{format}}.", "variables": {"module": {"type": "string", "required": true, "max_length": 512, "description": "module or path to document"}, "format": {"type": "enum", "values": ["Markdown", "reStructuredText", "AsciiDoc"], "default": "Markdown", "description": "output format"}}}'::jsonb)
            ) AS n(name, old_body, new_body)
            WHERE i.tenant_id = t AND i.kind = 'prompt-templates' AND i.managed AND i.name = n.name
              AND i.body = n.old_body;
        UPDATE api.catalog_items SET body = (body - 'template' - 'vars')
                || jsonb_build_object('body', body->'template')
                || CASE WHEN body ? 'vars' THEN jsonb_build_object('variables', body->'vars') ELSE '{}'::jsonb END
            WHERE tenant_id = t AND kind = 'prompt-templates' AND body ? 'template';
    END LOOP;
END
$do$;

-- The seeds of new tenants, in the new shape, with one template taking free
-- text (issue-task: paddock run launch --var issue=N --var-file task=FILE).
CREATE OR REPLACE FUNCTION api.catalog_seed(t uuid) RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    item record;
BEGIN
    -- inserts run as the tenant (row-level security keys on this setting)
    PERFORM set_config('paddock.tenant_id', t::text, true);
    FOR item IN SELECT * FROM (VALUES
        ('images', 'debian-minimal', '{"description": "Debian 12 base: coreutils, git, ca-certificates"}'),
        ('images', 'debian-python', '{"description": "Debian 12 with python3, pip and venv"}'),
        ('images', 'node-agents', '{"description": "Debian 12 with Node.js and npm for the agent CLIs"}'),
        ('egress-profiles', 'github', '{"description": "GitHub", "rules": ["github.com", "*.github.com", "*.githubusercontent.com"]}'),
        ('egress-profiles', 'gitlab', '{"description": "GitLab.com", "rules": ["gitlab.com", "*.gitlab.com", "registry.gitlab.com"]}'),
        ('egress-profiles', 'bitbucket', '{"description": "Bitbucket Cloud", "rules": ["bitbucket.org", "*.bitbucket.org", "api.bitbucket.org"]}'),
        ('egress-profiles', 'npm', '{"description": "npm registry", "rules": ["registry.npmjs.org"]}'),
        ('egress-profiles', 'pypi', '{"description": "Python Package Index", "rules": ["pypi.org", "files.pythonhosted.org"]}'),
        ('egress-profiles', 'crates', '{"description": "crates.io (Rust)", "rules": ["crates.io", "static.crates.io", "index.crates.io"]}'),
        ('egress-profiles', 'go-proxy', '{"description": "Go module proxy and checksum database", "rules": ["proxy.golang.org", "sum.golang.org"]}'),
        ('egress-profiles', 'maven-central', '{"description": "Maven Central", "rules": ["repo1.maven.org", "repo.maven.apache.org"]}'),
        ('egress-profiles', 'rubygems', '{"description": "RubyGems", "rules": ["rubygems.org", "index.rubygems.org"]}'),
        ('egress-profiles', 'nuget', '{"description": "NuGet", "rules": ["api.nuget.org", "globalcdn.nuget.org"]}'),
        ('egress-profiles', 'packagist', '{"description": "Packagist (PHP Composer)", "rules": ["repo.packagist.org", "packagist.org"]}'),
        ('egress-profiles', 'docker-hub', '{"description": "Docker Hub registry", "rules": ["registry-1.docker.io", "auth.docker.io", "production.cloudflare.docker.com"]}'),
        ('egress-profiles', 'ghcr', '{"description": "GitHub Container Registry", "rules": ["ghcr.io", "pkg-containers.githubusercontent.com"]}'),
        ('egress-profiles', 'anthropic-api', '{"description": "Anthropic API", "rules": ["api.anthropic.com"]}'),
        ('egress-profiles', 'openai-api', '{"description": "OpenAI API", "rules": ["api.openai.com"]}'),
        ('egress-profiles', 'debian-mirrors', '{"description": "Debian archive and security mirrors", "rules": ["deb.debian.org", "security.debian.org"]}'),
        ('egress-profiles', 'ubuntu-mirrors', '{"description": "Ubuntu archive and security mirrors", "rules": ["archive.ubuntu.com", "security.ubuntu.com"]}'),
        ('egress-profiles', 'alpine', '{"description": "Alpine Linux packages", "rules": ["dl-cdn.alpinelinux.org"]}'),
        ('egress-profiles', 'hex', '{"description": "Hex (Elixir/Erlang)", "rules": ["hex.pm", "repo.hex.pm"]}'),
        ('egress-profiles', 'cpan', '{"description": "CPAN (Perl)", "rules": ["cpan.metacpan.org"]}'),
        ('prompt-templates', 'code-review', '{"description": "Review a change set", "body": "Review the changes under {{path}}. Focus on {{focus}}. Report at most {{max_findings}} findings.", "variables": {"path": {"type": "string", "required": true, "max_length": 1024, "description": "directory or file to review, relative to the workspace"}, "focus": {"type": "string", "default": "correctness and security", "max_length": 200, "description": "what to look at first"}, "max_findings": {"type": "integer", "default": 10, "description": "most findings to report"}}}'),
        ('prompt-templates', 'fix-failing-tests', '{"description": "Make a failing test suite pass", "body": "Run {{test_command}} and fix the failures. Refactoring allowed: {{allow_refactor}}.", "variables": {"test_command": {"type": "string", "required": true, "max_length": 1024, "description": "the command that runs the tests"}, "allow_refactor": {"type": "boolean", "default": false, "description": "whether code may be restructured"}}}'),
        ('prompt-templates', 'write-docs', '{"description": "Document a module", "body": "Write reference documentation for {{module}} in {{format}}.", "variables": {"module": {"type": "string", "required": true, "max_length": 512, "description": "module or path to document"}, "format": {"type": "enum", "values": ["Markdown", "reStructuredText", "AsciiDoc"], "default": "Markdown", "description": "output format"}}}'),
        ('prompt-templates', 'issue-task', '{"description": "Work on an issue: its number and the task in free text", "body": "Work on issue #{{issue}} in this repository ({{kind}}).\n\n{{task}}\n", "variables": {"issue": {"type": "integer", "required": true, "description": "issue number"}, "kind": {"type": "enum", "values": ["bug", "feature", "chore"], "default": "bug", "description": "what kind of issue"}, "task": {"type": "text", "required": true, "max_length": 20000, "description": "the task, in free text (paddock run launch --var-file task=FILE, or POST /v1/runs prompt)"}}}')
    ) AS v(kind, name, body) LOOP
        INSERT INTO api.catalog_items (id, tenant_id, kind, name, body, state, managed, created_by,
                                       approved_by, approved_at)
        VALUES (gen_random_uuid(), t, item.kind, item.name, item.body::jsonb, 'approved', true, 'platform',
                'platform', now())
        ON CONFLICT (tenant_id, kind, name) DO NOTHING;
    END LOOP;
END
$fn$;

SELECT api.catalog_seed(id) FROM api.tenants;

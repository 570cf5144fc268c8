-- Governance catalog (API.md "Governance catalog"): tenant-owned items of five
-- kinds, draft until a security_admin approves them. Only approved items can be
-- used by a sandbox definition (spec_validate.c) and resolved at launch
-- (policy.c). body is validated per kind by catalog.c before it is stored.
CREATE TABLE api.catalog_items (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES api.tenants(id),
    kind         text NOT NULL CHECK (kind IN ('images', 'skills', 'prompt-templates',
                                               'egress-profiles', 'connectors')),
    name         text NOT NULL,
    body         jsonb NOT NULL,
    state        text NOT NULL DEFAULT 'draft' CHECK (state IN ('draft', 'approved')),
    -- seeded by the platform (not created by a user of the tenant)
    managed      boolean NOT NULL DEFAULT false,
    created_by   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    approved_by  text,
    approved_at  timestamptz,
    UNIQUE (tenant_id, kind, name)
);
CREATE INDEX catalog_items_kind ON api.catalog_items (tenant_id, kind, name);

-- The managed items every tenant starts with. A function (not api code) so
-- that tenants created before this migration get them here, and tenants
-- created later (bootstrap, or any other path) get them from the trigger.
-- Existing rows are left alone: a tenant may have changed a seeded item.
CREATE FUNCTION api.catalog_seed(t uuid) RETURNS void LANGUAGE plpgsql AS $fn$
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
        ('prompt-templates', 'code-review', '{"description": "Review a change set", "template": "Review the changes under {{path}}. Focus on {{focus}}. Report at most {{max_findings}} findings.", "vars": {"path": {"type": "string", "required": true}, "focus": {"type": "string", "default": "correctness and security"}, "max_findings": {"type": "integer", "default": 10}}}'),
        ('prompt-templates', 'fix-failing-tests', '{"description": "Make a failing test suite pass", "template": "Run {{test_command}} and fix the failures. Refactoring allowed: {{allow_refactor}}.", "vars": {"test_command": {"type": "string", "required": true}, "allow_refactor": {"type": "boolean", "default": false}}}'),
        ('prompt-templates', 'write-docs', '{"description": "Document a module", "template": "Write reference documentation for {{module}} in {{format}}.", "vars": {"module": {"type": "string", "required": true}, "format": {"type": "string", "default": "Markdown"}}}')
    ) AS v(kind, name, body) LOOP
        INSERT INTO api.catalog_items (id, tenant_id, kind, name, body, state, managed, created_by,
                                       approved_by, approved_at)
        VALUES (gen_random_uuid(), t, item.kind, item.name, item.body::jsonb, 'approved', true, 'platform',
                'platform', now())
        ON CONFLICT (tenant_id, kind, name) DO NOTHING;
    END LOOP;
END
$fn$;

CREATE FUNCTION api.catalog_seed_new_tenant() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM api.catalog_seed(NEW.id);
    RETURN NULL;
END
$fn$;

CREATE TRIGGER tenants_catalog_seed AFTER INSERT ON api.tenants
    FOR EACH ROW EXECUTE FUNCTION api.catalog_seed_new_tenant();

SELECT api.catalog_seed(id) FROM api.tenants;

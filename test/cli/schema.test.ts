import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { MANIFEST_KEYS } from '../../src/cli/manifest.js';
import { INBOX_POLICIES, LIMITS, TAG_RE, VISIBILITIES } from '../../src/protocol/constants.js';

describe('schema/mrp.schema.json', () => {
  it('says what the validator enforces (one set of rules, two forms)', async () => {
    const schema = JSON.parse(await readFile(new URL('../../schema/mrp.schema.json', import.meta.url), 'utf8'));
    const p = schema.properties;
    assert.deepEqual(Object.keys(p).sort(), [...MANIFEST_KEYS].sort());
    assert.equal(p.name.maxLength, LIMITS.maxDisplayName);
    assert.deepEqual(p.visibility.enum, [...VISIBILITIES]);
    assert.deepEqual(p.inbox_policy.enum, [...INBOX_POLICIES]);
    assert.equal(p.capabilities.maxItems, LIMITS.maxCapabilities);
    assert.equal(p.metadata.maxProperties, LIMITS.maxMetadataKeys);
    assert.equal(p.metadata.propertyNames.maxLength, LIMITS.metadataKeyMax);
    assert.equal(p.metadata.additionalProperties.maxLength, LIMITS.metadataValueMax);
    assert.equal(schema.$defs.tag.pattern, TAG_RE.source);
    const c = schema.$defs.capability.properties;
    assert.equal(c.name.maxLength, LIMITS.capabilityNameMax);
    assert.equal(c.description.maxLength, LIMITS.capabilityDescriptionMax);
    assert.equal(c.tags.maxItems, LIMITS.maxTagsPerCapability);
    assert.equal(c.version.maxLength, LIMITS.capabilityVersionMax);
  });
});

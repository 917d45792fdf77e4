/**
 * `mrp.yaml`: the agent's public face (name, visibility, inbox policy, capabilities, metadata)
 * and its ACL. Validated locally with the very rules the relay applies (protocol/validate.ts),
 * plus what the relay would silently ignore (unknown keys); every error is reported at once and
 * points at the file, line and field.
 */
import { existsSync } from 'node:fs';
import { relative, resolve } from 'node:path';
import type { RelayClient } from '../client/http.js';
import { ConfigError, MrpError } from '../core/errors.js';
import { didYouMean } from '../core/suggest.js';
import { type ContactBook, resolveRecipient } from '../protocol/contacts.js';
import type { AclEntry, AclEntryType, AgentProfile, ProfilePatch } from '../protocol/types.js';
import {
  isPlainObject,
  ValidationError,
  validateCapabilities,
  validateCapability,
  validateMetadata,
  validateProfilePatch,
} from '../protocol/validate.js';
import type { CliContext } from './context.js';
import { readLocalText } from './files.js';

export const MANIFEST_KEYS = ['name', 'visibility', 'inbox_policy', 'capabilities', 'metadata', 'acl'] as const;

export interface ManifestAcl {
  allow: string[];
  block: string[];
}

export interface Manifest {
  file: string;
  /** The PATCH body this manifest asks for (only the fields it sets). */
  patch: ProfilePatch;
  /** ACL entries as public keys, when the manifest has an `acl` section. */
  acl: ManifestAcl | undefined;
}

type Path = Array<string | number>;

/** `capabilities[0].tags[1]` → ['capabilities', 0, 'tags', 1] */
function parsePath(field: string): Path {
  const out: Path = [];
  for (const m of field.matchAll(/([^.[\]]+)|\[(\d+)\]/g)) out.push(m[2] !== undefined ? Number(m[2]) : m[1]!);
  return out;
}

interface Located {
  line: number;
  col: number;
}

/** One problem in a manifest, at its line. */
export interface ManifestProblem {
  line?: number;
  col?: number;
  field: string;
  reason: string;
  hint?: string;
}

/** Keys a capability object may have (schema/mrp.schema.json `$defs.capability`). */
export const CAPABILITY_KEYS = ['name', 'description', 'tags', 'input_schema', 'version'] as const;
const ACL_KEYS = ['allow', 'block'] as const;
/** Aliases (`*a`) a manifest may expand: a few are handy, thousands are a "billion laughs" attack. */
const MAX_ALIASES = 100;
/** A manifest is shallow; deeper nesting (input_schema) is allowed up to here. */
const MAX_DEPTH = 64;
/** Errors listed one by one; a file with more is probably not a manifest at all. */
const MAX_REPORTED = 20;
/** Hand-written manifests are small. */
const MAX_BYTES = 1024 * 1024;

/** Nesting depth of a parsed value, iteratively (no recursion on hostile input). */
function depthOf(value: unknown): number {
  let max = 0;
  const stack: Array<[unknown, number]> = [[value, 0]];
  while (stack.length) {
    const [v, d] = stack.pop()!;
    if (d > max) max = d;
    if (max > MAX_DEPTH) return max;
    if (v !== null && typeof v === 'object') for (const child of Object.values(v)) stack.push([child, d + 1]);
  }
  return max;
}

function invalid(file: string, shown: string, all: ManifestProblem[]): ConfigError {
  const problems = all.slice(0, MAX_REPORTED);
  const at = (p: ManifestProblem): string =>
    `${shown}${p.line ? `:${p.line}${p.col ? `:${p.col}` : ''}` : ''}: ${p.field ? `${p.field}: ` : ''}${p.reason}`;
  const first = problems[0]!;
  const more = all.length > problems.length ? ` (the first ${problems.length} shown)` : '';
  const message =
    problems.length === 1 ? at(first) : `${shown}: ${all.length} errors${more}\n${problems.map(at).join('\n')}`;
  return new ConfigError('manifest_invalid', message, {
    file,
    details: {
      file,
      ...(problems.length === 1 ? { field: first.field, line: first.line, reason: first.reason } : {}),
      errors: problems,
    },
    ...(problems.length === 1 && first.hint ? { hint: first.hint } : {}),
  });
}

/**
 * Reads and checks a manifest. Every problem is reported (not just the first), each with its
 * line; unknown keys, also inside a capability, are errors with a "did you mean".
 */
export async function loadManifest(
  file: string,
  options: { cwd: string; contacts?: () => Promise<ContactBook>; contactsFile?: string },
): Promise<Manifest> {
  const shown = relative(options.cwd, file) || file;
  const text = await readLocalText(file, { code: 'manifest_invalid', what: 'manifest', maxBytes: MAX_BYTES });
  if (text === undefined)
    throw new ConfigError('manifest_not_found', `manifest ${file} does not exist`, {
      file,
      hint: 'create one with `mrp init`',
    });
  const { parseDocument, LineCounter } = await import('yaml');
  const lines = new LineCounter();
  const problems: ManifestProblem[] = [];
  let doc: ReturnType<typeof parseDocument>;
  let data: unknown;
  try {
    doc = parseDocument(text, { lineCounter: lines, prettyErrors: true, uniqueKeys: true });
    if (doc.errors.some((e) => /call stack/i.test(e.message))) throw new RangeError('too deep');
    if (doc.errors.length) {
      for (const e of doc.errors) {
        const pos = e.linePos?.[0];
        problems.push({
          ...(pos ? { line: pos.line, col: pos.col } : {}),
          field: '',
          reason: e.message.split('\n')[0]!,
        });
      }
      throw invalid(file, shown, problems);
    }
    data = doc.toJS({ maxAliasCount: MAX_ALIASES });
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    // yaml throws ReferenceError for alias bombs; a stack overflow for absurd nesting.
    const reason =
      err instanceof RangeError
        ? `nested too deeply (more than ${MAX_DEPTH} levels)`
        : /alias/i.test((err as Error).message)
          ? `too many alias references (more than ${MAX_ALIASES}): refused as a resource-exhaustion attack`
          : (err as Error).message;
    throw invalid(file, shown, [{ field: '', reason }]);
  }
  if (depthOf(data) > MAX_DEPTH)
    throw invalid(file, shown, [{ field: '', reason: `nested too deeply (more than ${MAX_DEPTH} levels)` }]);

  const locate = (path: Path): Located | undefined => {
    for (let n = path.length; n >= 0; n--) {
      const node = (n === 0 ? doc.contents : doc.getIn(path.slice(0, n), true)) as
        | { range?: [number, number, number] }
        | undefined;
      if (node?.range) return lines.linePos(node.range[0]);
    }
    return undefined;
  };
  const problem = (path: Path, field: string, reason: string, hint?: string): void => {
    const at = locate(path);
    problems.push({ ...(at ? { line: at.line } : {}), field, reason, ...(hint ? { hint } : {}) });
  };
  /** Runs one relay validation; a failure becomes a problem at its field. */
  const check = <T>(rename: (field: string) => string, run: () => T): T | undefined => {
    try {
      return run();
    } catch (err) {
      if (!(err instanceof ValidationError)) throw err;
      const field = rename(err.field);
      problem(parsePath(field), field, err.reason);
      return undefined;
    }
  };

  if (data === null || data === undefined) return { file, patch: {}, acl: undefined };
  if (!isPlainObject(data))
    throw invalid(file, shown, [
      { line: 1, field: '', reason: 'the manifest must be a mapping of keys (name, visibility, …)' },
    ]);
  for (const key of Object.keys(data)) {
    if (!(MANIFEST_KEYS as readonly string[]).includes(key)) {
      problem(
        [key],
        key,
        `unknown key${didYouMean(key, MANIFEST_KEYS)}; the manifest knows ${MANIFEST_KEYS.join(', ')}`,
      );
    }
  }

  const patch: ProfilePatch = {};
  const same = (f: string): string => f;
  if ('name' in data) {
    const v = check(
      (f) => f.replace(/^display_name/, 'name'),
      () => validateProfilePatch({ display_name: data['name'] }).display_name,
    );
    if (v !== undefined) patch.display_name = v;
  }
  for (const key of ['visibility', 'inbox_policy'] as const) {
    if (!(key in data) || data[key] === null) continue;
    const v = check(same, () => validateProfilePatch({ [key]: data[key] })[key]);
    if (v !== undefined) (patch as Record<string, unknown>)[key] = v;
  }
  const metadata = data['metadata'];
  if (metadata !== undefined && metadata !== null) {
    let typed = true;
    if (isPlainObject(metadata)) {
      for (const [k, v] of Object.entries(metadata)) {
        if (typeof v === 'number' || typeof v === 'boolean') {
          typed = false;
          problem(['metadata', k], `metadata.${k}`, 'values must be strings', `quote it: ${k}: "${String(v)}"`);
        }
      }
    }
    const v = typed ? check(same, () => validateMetadata(metadata)) : undefined;
    if (v !== undefined) patch.metadata = v;
  }
  const capabilities = data['capabilities'];
  if (capabilities !== undefined && capabilities !== null) {
    if (!Array.isArray(capabilities)) {
      problem(['capabilities'], 'capabilities', 'must be a list of capabilities (objects or tag strings)');
    } else {
      let ok = true;
      for (const [i, c] of capabilities.entries()) {
        if (isPlainObject(c)) {
          for (const key of Object.keys(c)) {
            if ((CAPABILITY_KEYS as readonly string[]).includes(key)) continue;
            ok = false;
            problem(
              ['capabilities', i, key],
              `capabilities[${i}].${key}`,
              `unknown key${didYouMean(key, CAPABILITY_KEYS)}; a capability has ${CAPABILITY_KEYS.join(', ')}`,
            );
          }
        }
        if (!capabilityValid(c, `capabilities[${i}]`, check)) ok = false;
      }
      const v = ok ? check(same, () => validateCapabilities(capabilities)) : undefined;
      if (v !== undefined) patch.capabilities = v;
    }
  }

  let acl: ManifestAcl | undefined;
  const rawAcl = data['acl'];
  if (rawAcl !== undefined && rawAcl !== null) {
    if (!isPlainObject(rawAcl)) {
      problem(['acl'], 'acl', 'must be a mapping with `allow` and/or `block` lists');
    } else {
      const resolved: ManifestAcl = { allow: [], block: [] };
      const book = options.contacts ? await options.contacts() : { contacts: [], extra: {} };
      for (const name of Object.keys(rawAcl)) {
        if (!(ACL_KEYS as readonly string[]).includes(name)) {
          problem(['acl', name], `acl.${name}`, `unknown key${didYouMean(name, ACL_KEYS)}; use allow and block`);
          continue;
        }
        const key = name as keyof ManifestAcl;
        const list = rawAcl[key];
        if (list === null || list === undefined) continue;
        if (!Array.isArray(list)) {
          problem(['acl', key], `acl.${key}`, 'must be a list of public keys or contact names');
          continue;
        }
        for (const [i, entry] of (list as unknown[]).entries()) {
          if (typeof entry !== 'string') {
            problem(['acl', key, i], `acl.${key}[${i}]`, 'must be a public key or contact name');
            continue;
          }
          try {
            resolved[key].push(resolveRecipient(book, entry, options.contactsFile ?? 'contacts.json'));
          } catch (err) {
            if (!(err instanceof MrpError)) throw err;
            problem(['acl', key, i], `acl.${key}[${i}]`, err.message, err.hint);
          }
        }
      }
      const both = resolved.allow.filter((k) => resolved.block.includes(k));
      if (both.length) problem(['acl'], 'acl', `${both[0]} is in both allow and block`);
      acl = resolved;
    }
  }
  if (problems.length) {
    problems.sort((a, b) => (a.line ?? 0) - (b.line ?? 0));
    throw invalid(file, shown, problems);
  }
  return { file, patch, acl };
}

/**
 * Checks one capability and reports every problem in it, not only the first: the protocol's
 * `validateCapability` stops at the first, so an object is checked one field (and one tag) at a
 * time, each as a capability of its own. A tag string or a non-object goes through it whole.
 */
function capabilityValid(
  c: unknown,
  field: string,
  check: <T>(rename: (field: string) => string, run: () => T) => T | undefined,
): boolean {
  const same = (f: string): string => f;
  if (!isPlainObject(c)) return check(same, () => validateCapability(c, field)) !== undefined;
  let ok = check(same, () => validateCapability({ name: c['name'] }, field)) !== undefined;
  const alone = (key: string, value: unknown, rename = same): void => {
    if (check(rename, () => validateCapability({ name: 'x', [key]: value }, field)) === undefined) ok = false;
  };
  for (const key of ['description', 'input_schema', 'version'] as const) if (key in c) alone(key, c[key]);
  const tags = c['tags'];
  if (Array.isArray(tags) && tags.length > 0) {
    alone('tags', new Array<string>(tags.length).fill('tag')); // how many
    for (const [j, tag] of tags.entries()) {
      alone('tags', [tag], (f) => f.replace(`${field}.tags[0]`, `${field}.tags[${j}]`));
    }
  } else if ('tags' in c) alone('tags', tags);
  return ok;
}

/** Every ACL entry on the relay (all pages). */
export async function allAclEntries(client: RelayClient, type?: AclEntryType): Promise<AclEntry[]> {
  const entries: AclEntry[] = [];
  let cursor: string | undefined;
  do {
    const page = await client.listAcl({
      ...(type ? { entry_type: type } : {}),
      limit: 1000,
      ...(cursor ? { cursor } : {}),
    });
    entries.push(...page.entries);
    cursor = page.has_more ? (page.next_cursor ?? undefined) : undefined;
  } while (cursor);
  return entries;
}

/**
 * ACL entries on the relay that the manifest's `acl` section does not list (none when the
 * manifest has no `acl` section: then it does not describe the ACL). `announce --prune` removes them.
 */
export function aclDrift(manifest: Manifest, entries: AclEntry[]): AclEntry[] {
  const acl = manifest.acl;
  if (!acl) return [];
  const listed = new Set([...acl.allow, ...acl.block]);
  return entries.filter((e) => !listed.has(e.peer_key));
}

/**
 * PATCHes the profile and PUTs the ACL entries a manifest asks for. Entries it omits stay unless
 * they are passed as `prune` (see `aclDrift`).
 */
export async function applyManifest(
  client: RelayClient,
  manifest: Manifest,
  options: { prune?: readonly AclEntry[] } = {},
): Promise<void> {
  if (Object.keys(manifest.patch).length > 0) await client.updateProfile(manifest.patch);
  for (const peer of manifest.acl?.allow ?? []) await client.putAcl(peer, 'allow');
  for (const peer of manifest.acl?.block ?? []) await client.putAcl(peer, 'block');
  for (const entry of options.prune ?? []) await client.deleteAcl(entry.peer_key);
}

export interface ManifestChange {
  field: string;
  from: unknown;
  to: unknown;
}

const PATCH_TO_MANIFEST: Record<keyof ProfilePatch, string> = {
  display_name: 'name',
  visibility: 'visibility',
  inbox_policy: 'inbox_policy',
  metadata: 'metadata',
  capabilities: 'capabilities',
};

/** What applying `manifest` would change on the relay, field by field (`name` as in the file). */
export function manifestChanges(manifest: Manifest, profile: AgentProfile, acl: AclEntry[]): ManifestChange[] {
  const changes: ManifestChange[] = [];
  for (const [key, to] of Object.entries(manifest.patch) as Array<[keyof ProfilePatch, unknown]>) {
    const from = profile[key];
    if (JSON.stringify(from) !== JSON.stringify(to)) changes.push({ field: PATCH_TO_MANIFEST[key], from, to });
  }
  const current = new Map(acl.map((e) => [e.peer_key, e.entry_type]));
  for (const type of ['allow', 'block'] as const) {
    for (const peer of manifest.acl?.[type] ?? []) {
      const from = current.get(peer);
      if (from !== type)
        changes.push({ field: `acl.${type}`, from: from ? `${from} ${peer}` : null, to: `${type} ${peer}` });
    }
  }
  return changes;
}

/** The project's manifest: `file` when given (it must exist), else ./mrp.yaml if there is one. */
export async function projectManifest(ctx: CliContext, file: string): Promise<Manifest>;
export async function projectManifest(ctx: CliContext, file?: string): Promise<Manifest | undefined>;
export async function projectManifest(ctx: CliContext, file?: string): Promise<Manifest | undefined> {
  const path = resolve(ctx.deps.cwd, file ?? 'mrp.yaml');
  if (file === undefined && !existsSync(path)) return undefined;
  return loadManifest(path, { cwd: ctx.deps.cwd, contacts: () => ctx.contacts(), contactsFile: ctx.contactsPath });
}

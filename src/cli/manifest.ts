/**
 * `mrp.yaml`: the agent's public face (name, visibility, inbox policy, capabilities, metadata)
 * and its ACL. Validated locally with the very rules the relay applies (protocol/validate.ts),
 * and every error points at the file, line and field.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { relative, resolve } from 'node:path';
import { ConfigError, MrpError } from '../core/errors.js';
import { type ContactBook, resolveRecipient } from '../protocol/contacts.js';
import type { RelayClient } from '../client/http.js';
import type { CliContext } from './context.js';
import type { AclEntry, AgentProfile, ProfilePatch } from '../protocol/types.js';
import { isPlainObject, validateProfilePatch, ValidationError } from '../protocol/validate.js';

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

export async function loadManifest(file: string, options: { cwd: string; contacts?: () => Promise<ContactBook>; contactsFile?: string }): Promise<Manifest> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new ConfigError('manifest_not_found', `manifest ${file} does not exist`, { file, hint: 'create one with `mrp init`' });
    }
    throw err;
  }
  const shown = relative(options.cwd, file) || file;
  const { parseDocument, LineCounter } = await import('yaml');
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: true, uniqueKeys: true });
  const parseError = doc.errors[0];
  if (parseError) {
    const pos = parseError.linePos?.[0];
    throw new ConfigError('manifest_invalid', `${shown}${pos ? `:${pos.line}:${pos.col}` : ''}: ${parseError.message.split('\n')[0]}`, {
      file,
      details: { file, line: pos?.line },
    });
  }

  const locate = (path: Path): Located | undefined => {
    for (let n = path.length; n >= 0; n--) {
      const node = (n === 0 ? doc.contents : doc.getIn(path.slice(0, n), true)) as { range?: [number, number, number] } | undefined;
      if (node?.range) return lines.linePos(node.range[0]);
    }
    return undefined;
  };
  const fail = (path: Path, field: string, reason: string, hint?: string): never => {
    const at = locate(path);
    throw new ConfigError('manifest_invalid', `${shown}${at ? `:${at.line}` : ''}: ${field ? `${field}: ` : ''}${reason}`, {
      file,
      details: { file, field, line: at?.line, reason },
      ...(hint ? { hint } : {}),
    });
  };

  const data: unknown = doc.toJS();
  if (data === null || data === undefined) return { file, patch: {}, acl: undefined };
  if (!isPlainObject(data)) return fail([], '', 'the manifest must be a mapping of keys (name, visibility, …)');
  for (const key of Object.keys(data)) {
    if (!(MANIFEST_KEYS as readonly string[]).includes(key)) {
      fail([key], key, `unknown key; the manifest knows ${MANIFEST_KEYS.join(', ')}`);
    }
  }

  const raw: Record<string, unknown> = {};
  if ('name' in data) raw['display_name'] = data['name'];
  for (const key of ['visibility', 'inbox_policy', 'capabilities', 'metadata'] as const) if (key in data) raw[key] = data[key];
  const metadata = data['metadata'];
  if (isPlainObject(metadata)) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v === 'number' || typeof v === 'boolean') {
        fail(['metadata', k], `metadata.${k}`, 'values must be strings', `quote it: ${k}: "${String(v)}"`);
      }
    }
  }
  let patch: ProfilePatch;
  try {
    patch = validateProfilePatch(raw);
  } catch (err) {
    if (!(err instanceof ValidationError)) throw err;
    const field = err.field.replace(/^display_name/, 'name');
    return fail(parsePath(field), field, err.reason);
  }

  let acl: ManifestAcl | undefined;
  const rawAcl = data['acl'];
  if (rawAcl !== undefined && rawAcl !== null) {
    if (!isPlainObject(rawAcl)) return fail(['acl'], 'acl', 'must be a mapping with `allow` and/or `block` lists');
    acl = { allow: [], block: [] };
    const book = options.contacts ? await options.contacts() : { contacts: [], extra: {} };
    for (const name of Object.keys(rawAcl)) {
      if (name !== 'allow' && name !== 'block') fail(['acl', name], `acl.${name}`, 'unknown key; use allow and block');
      const key = name as keyof ManifestAcl;
      const list = rawAcl[key];
      if (list === null || list === undefined) continue;
      if (!Array.isArray(list)) fail(['acl', key], `acl.${key}`, 'must be a list of public keys or contact names');
      for (const [i, entry] of (list as unknown[]).entries()) {
        if (typeof entry !== 'string') fail(['acl', key, i], `acl.${key}[${i}]`, 'must be a public key or contact name');
        try {
          acl[key].push(resolveRecipient(book, entry as string, options.contactsFile ?? 'contacts.json'));
        } catch (err) {
          if (!(err instanceof MrpError)) throw err;
          fail(['acl', key, i], `acl.${key}[${i}]`, err.message, err.hint);
        }
      }
    }
    const both = acl.allow.filter((k) => acl!.block.includes(k));
    if (both.length) fail(['acl'], 'acl', `${both[0]} is in both allow and block`);
  }
  return { file, patch, acl };
}

/** PATCHes the profile and PUTs the ACL entries a manifest asks for (entries it omits stay). */
export async function applyManifest(client: RelayClient, manifest: Manifest): Promise<void> {
  if (Object.keys(manifest.patch).length > 0) await client.updateProfile(manifest.patch);
  for (const peer of manifest.acl?.allow ?? []) await client.putAcl(peer, 'allow');
  for (const peer of manifest.acl?.block ?? []) await client.putAcl(peer, 'block');
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
      if (from !== type) changes.push({ field: `acl.${type}`, from: from ? `${from} ${peer}` : null, to: `${type} ${peer}` });
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

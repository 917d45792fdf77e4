/**
 * Key file codec (docs/protocol.md §1.2, our choice). Files are written as exactly 32 raw seed bytes; reading
 * is tolerant: text forms first (64-char hex, 43-char base64url, 44-char base64), then raw bytes
 * (32 = seed, 64 = seed‖public as libsodium lays it out). Pure: the CLI does the file I/O.
 */
import { ConfigError } from '../core/errors.js';
import { fromBase64, fromBase64Url, fromHex } from './encoding.js';
import { Keypair } from './signing.js';

export type KeyFileFormat = 'raw-seed' | 'raw-seed-public' | 'hex' | 'base64url' | 'base64';

export interface DecodedKeyFile {
  keypair: Keypair;
  format: KeyFileFormat;
}

function textForm(bytes: Uint8Array): { seed: Uint8Array; format: KeyFileFormat } | undefined {
  // Text forms are short ASCII; anything else is binary.
  if (bytes.length > 200) return undefined;
  const text = Buffer.from(bytes).toString('latin1').trim();
  if (text.length === 64) {
    const seed = fromHex(text);
    if (seed) return { seed, format: 'hex' };
  }
  if (text.length === 43) {
    const seed = fromBase64Url(text);
    if (seed?.length === 32) return { seed, format: 'base64url' };
  }
  if (text.length === 44) {
    const seed = fromBase64(text);
    if (seed?.length === 32) return { seed, format: 'base64' };
  }
  return undefined;
}

/**
 * Decodes the contents of a key file. `file` is only used in error messages. Throws ConfigError
 * `key_invalid` for anything that is not one of the accepted forms, or a 64-byte file whose
 * public half does not match its seed.
 */
export function decodeKeyFile(bytes: Uint8Array, file: string): DecodedKeyFile {
  const text = textForm(bytes);
  if (text) return { keypair: Keypair.fromSeed(text.seed), format: text.format };
  if (bytes.length === 32) return { keypair: Keypair.fromSeed(bytes), format: 'raw-seed' };
  if (bytes.length === 64) {
    const keypair = Keypair.fromSeed(bytes.subarray(0, 32));
    if (!Buffer.from(keypair.publicKeyBytes).equals(Buffer.from(bytes.subarray(32)))) {
      throw new ConfigError('key_invalid', `key file ${file}: its public half does not match its seed`, {
        file,
        hint: 'the file is corrupt; restore it from a backup or create a new identity with `mrp keygen --force`',
      });
    }
    return { keypair, format: 'raw-seed-public' };
  }
  throw new ConfigError(
    'key_invalid',
    `key file ${file} is not an Ed25519 key (${bytes.length} bytes; expected a 32-byte seed, 64 raw bytes, or a hex/base64url/base64 seed)`,
    { file, hint: 'point --key at a key created by `mrp keygen` or the MRP SDK' },
  );
}

/** The bytes `mrp keygen` writes: exactly the 32-byte seed. */
export function encodeKeyFile(keypair: Keypair): Uint8Array {
  return keypair.exportSeed();
}

// Shared helpers for the e2e client scripts: configuration comes from the
// environment, the result goes to stdout as one JSON document, and the script
// dies on its own after SCRIPT_TIMEOUT_MS so a hung client never hangs a test.

export function env(name, fallback) {
  const v = process.env[name];
  if (v === undefined || v === '') {
    if (fallback !== undefined) return fallback;
    throw new Error(`environment variable ${name} is required`);
  }
  return v;
}

// attempt runs fn and records whether it succeeded, its value or its error.
export async function attempt(name, fn) {
  try {
    const value = await fn();
    return { name, ok: true, value: value === undefined ? null : value };
  } catch (e) {
    return { name, ok: false, error: String(e && e.message ? e.message : e) };
  }
}

export async function main(fn) {
  const timeout = Number(process.env.SCRIPT_TIMEOUT_MS || 60000);
  const timer = setTimeout(() => {
    process.stderr.write(`script timed out after ${timeout} ms\n`);
    process.exit(3);
  }, timeout);
  try {
    const result = await fn();
    process.stdout.write(JSON.stringify(result) + '\n');
    clearTimeout(timer);
    process.exit(0);
  } catch (e) {
    process.stderr.write(String(e && e.stack ? e.stack : e) + '\n');
    process.exit(1);
  }
}

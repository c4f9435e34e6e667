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

// step notes progress on stderr, so a timeout shows where the script was.
export function step(name) {
  process.stderr.write(`step: ${name}\n`);
}

// attempt runs fn and records whether it succeeded, its value or its error.
// An attempt that gets no answer within ATTEMPT_TIMEOUT_MS is recorded as
// timed out (a hang), and the script goes on.
export async function attempt(name, fn) {
  step(name);
  const limit = Number(process.env.ATTEMPT_TIMEOUT_MS || 10000);
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${limit} ms (no answer)`)), limit);
  });
  try {
    const value = await Promise.race([fn(), timeout]);
    return { name, ok: true, value: value === undefined ? null : value };
  } catch (e) {
    return { name, ok: false, error: String(e && e.message ? e.message : e) };
  } finally {
    clearTimeout(timer);
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

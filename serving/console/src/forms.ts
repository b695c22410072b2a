// Client-side checks the forms run before sending (the server checks again; its 422 field errors
// are shown the same way, keyed by field path).
import type { FieldErrors } from "./api";

export const ID_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;

export function parseJson(text: string, field: string, errors: FieldErrors, fallback: unknown = undefined): unknown {
  if (!text.trim()) return fallback;
  try {
    return JSON.parse(text);
  } catch (exc) {
    errors[field] = `not valid JSON: ${(exc as Error).message}`;
    return undefined;
  }
}

export function checkId(value: string, field: string, errors: FieldErrors): void {
  if (!ID_PATTERN.test(value)) errors[field] = "1-64 letters, digits, '_', '.' or '-'";
}

export function parseIntField(value: string, field: string, errors: FieldErrors, min: number, max: number): number {
  const n = Number(value);
  if (value.trim() === "" || !Number.isInteger(n) || n < min || n > max) {
    errors[field] = `an integer from ${min} to ${max}`;
    return 0;
  }
  return n;
}

export function splitList(value: string): string[] {
  return value
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
}

/** The first error among fields starting with `prefix` (the server reports `variants.1.weight`). */
export function errorFor(errors: FieldErrors, prefix: string): string | undefined {
  if (errors[prefix]) return errors[prefix];
  const key = Object.keys(errors).find((k) => k.startsWith(`${prefix}.`));
  return key ? `${key}: ${errors[key]}` : undefined;
}

// What every form of the optimization, campaign, model and content pages shares: its own checks
// run before anything is sent; the server's 422 field errors (FastAPI `loc` paths such as
// `caps.per_user`) are shown at the input they name; any other API error is shown with its message.
import { Banner } from "@shopify/polaris";
import { useCallback, useState } from "react";
import { ApiError, type FieldErrors } from "../api";

export type Errors = FieldErrors;

/** Splits comma- or newline-separated text into trimmed, non-empty, distinct entries. */
export function splitList(text: string): string[] {
  return [...new Set(text.split(/[,\n]/).map((s) => s.trim()).filter(Boolean))];
}

/** A number typed in a field, or undefined when empty; NaN when it is not a number. */
export function parseNumber(text: string): number | undefined {
  const t = text.trim();
  if (t === "") return undefined;
  const n = Number(t);
  return Number.isFinite(n) ? n : Number.NaN;
}

/** The error shown at a field: the form's own check first, else the server's for that path or below it. */
export function fieldError(errors: Errors, name: string): string | undefined {
  if (errors[name]) return errors[name];
  const nested = Object.keys(errors).filter((k) => k.startsWith(`${name}.`));
  return nested.length ? nested.map((k) => `${k.slice(name.length + 1)}: ${errors[k]}`).join("; ") : undefined;
}

export interface Submission {
  busy: boolean;
  /** the form's own errors and the server's 422 fields, by field path */
  errors: Errors;
  /** the last failure (any status), shown with its message */
  failure: ApiError | null;
  setErrors: (e: Errors) => void;
  /** checks, then sends; resolves to the answer, or undefined when the checks or the request failed */
  submit: <T>(check: () => Errors, send: () => Promise<T>) => Promise<T | undefined>;
}

export function useSubmission(): Submission {
  const [busy, setBusy] = useState(false);
  const [errors, setErrors] = useState<Errors>({});
  const [failure, setFailure] = useState<ApiError | null>(null);
  const submit = useCallback(async <T,>(check: () => Errors, send: () => Promise<T>) => {
    const local = check();
    setFailure(null);
    setErrors(local);
    if (Object.keys(local).length > 0) return undefined;
    setBusy(true);
    try {
      return await send();
    } catch (exc) {
      const err = exc instanceof ApiError ? exc : new ApiError(0, String(exc));
      setFailure(err);
      setErrors(err.fields);
      return undefined;
    } finally {
      setBusy(false);
    }
  }, []);
  return { busy, errors, failure, setErrors, submit };
}

/** The banner above a form: the local checks that failed, or the server's message. */
export function FormFailure({ sub, title }: { sub: Submission; title?: string }) {
  const local = !sub.failure && Object.keys(sub.errors).length > 0;
  if (!sub.failure && !local) return null;
  if (local) {
    return (
      <Banner tone="warning" title="Fix the highlighted fields">
        <p>Nothing was sent.</p>
      </Banner>
    );
  }
  const f = sub.failure as ApiError;
  return (
    <Banner tone="critical" title={title ?? `The API refused it (${f.status || "no answer"})`}>
      <p data-testid="form-error">{f.message}</p>
    </Banner>
  );
}

/** A one-line outcome of an action (a button that is not a form): its error message or nothing. */
export function ActionError({ error }: { error: ApiError | null }) {
  if (!error) return null;
  return (
    <Banner tone="critical" title={`Failed (${error.status || "no answer"})`}>
      <p data-testid="action-error">{error.message}</p>
    </Banner>
  );
}

export function pct(v: number | null | undefined, digits = 1): string {
  return v === null || v === undefined || !Number.isFinite(v) ? "–" : `${(v * 100).toFixed(digits)}%`;
}

export function when(ms: number | null | undefined): string {
  return ms ? new Date(ms).toLocaleString() : "–";
}

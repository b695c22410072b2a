// Create an experiment: A/B/n (variants with weights) or multivariate (factors, full factorial).
// Checked before sending; the server's 422 field errors (variants.1.weight ...) show by field.
import { Banner, Button, ChoiceList, Form, FormLayout, TextField } from "@shopify/polaris";
import { useState } from "react";
import { ApiError, api, type Experiment, type FieldErrors } from "../api";
import { checkId, errorFor, splitList } from "../forms";

export interface ExperimentFields {
  kind: "ab" | "multivariate";
  id: string;
  name: string;
  variants: string;
  factors: string;
  conversions: string;
  coverage: string;
}

/** "control:1, green:1" -> variants; "headline: A | B" lines -> factors. */
export function experimentFromFields(f: ExperimentFields): { doc?: Record<string, unknown>; errors: FieldErrors } {
  const errors: FieldErrors = {};
  checkId(f.id, "id", errors);
  const doc: Record<string, unknown> = { id: f.id };
  if (f.name.trim()) doc.name = f.name.trim();
  if (f.kind === "ab") {
    const variants = splitList(f.variants).map((part) => {
      const [vid, w = "1"] = part.split(":").map((s) => s.trim());
      return { id: vid, weight: Number(w) };
    });
    if (variants.length < 2) errors.variants = "at least two variants, e.g. control:1, green:1";
    else if (variants.some((v) => !v.id || !Number.isFinite(v.weight) || v.weight <= 0))
      errors.variants = "each variant is id:weight with a positive weight";
    else if (new Set(variants.map((v) => v.id)).size !== variants.length) errors.variants = "variant ids must be unique";
    doc.variants = variants;
  } else {
    const factors: Record<string, string[]> = {};
    for (const line of f.factors.split("\n").map((l) => l.trim()).filter(Boolean)) {
      const [name, levels = ""] = line.split(":", 2);
      const values = levels.split("|").map((s) => s.trim()).filter(Boolean);
      if (!name.trim() || values.length < 2 || new Set(values).size !== values.length) {
        errors.factors = `"${line}": a factor is name: level | level (at least two distinct levels)`;
        break;
      }
      factors[name.trim()] = values;
    }
    if (!errors.factors && Object.keys(factors).length === 0) errors.factors = "at least one factor";
    doc.factors = factors;
  }
  const events = splitList(f.conversions);
  if (events.length) doc.conversion_events = events;
  if (f.coverage.trim()) {
    const c = Number(f.coverage);
    if (!(c > 0 && c <= 1)) errors.coverage = "a share in (0, 1]";
    else doc.coverage = c;
  }
  return Object.keys(errors).length ? { errors } : { doc, errors };
}

export function ExperimentForm({ onCreated }: { onCreated: (e: Experiment) => void }) {
  const [f, setF] = useState<ExperimentFields>({
    kind: "ab",
    id: "",
    name: "",
    variants: "control:1, treatment:1",
    factors: "headline: A | B\nimage: cat | dog",
    conversions: "purchase",
    coverage: "",
  });
  const [errors, setErrors] = useState<FieldErrors>({});
  const [failure, setFailure] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const set = (k: keyof ExperimentFields) => (v: string) => setF({ ...f, [k]: v });

  const submit = async () => {
    const { doc, errors: found } = experimentFromFields(f);
    setErrors(found);
    setFailure(null);
    if (!doc) return;
    setBusy(true);
    try {
      onCreated(await api.experiments.create(doc));
    } catch (exc) {
      if (exc instanceof ApiError) {
        setErrors(exc.fields);
        setFailure(`${exc.status}: ${exc.message}`);
      }
    } finally {
      setBusy(false);
    }
  };

  return (
    <Form onSubmit={submit}>
      <FormLayout>
        {failure && (
          <Banner tone="critical" title="The experiment was not created">
            <p>{failure}</p>
          </Banner>
        )}
        <ChoiceList
          title="Kind"
          choices={[
            { label: "A/B/n", value: "ab" },
            { label: "Multivariate", value: "multivariate" },
          ]}
          selected={[f.kind]}
          onChange={(v) => setF({ ...f, kind: v[0] as ExperimentFields["kind"] })}
        />
        <FormLayout.Group condensed>
          <TextField label="Experiment id" value={f.id} onChange={set("id")} autoComplete="off" error={errorFor(errors, "id")} />
          <TextField label="Name" value={f.name} onChange={set("name")} autoComplete="off" error={errorFor(errors, "name")} />
        </FormLayout.Group>
        {f.kind === "ab" ? (
          <TextField label="Variants (id:weight, first is control)" value={f.variants} onChange={set("variants")} autoComplete="off" error={errorFor(errors, "variants") ?? errorFor(errors, "control")} />
        ) : (
          <TextField label="Factors (one per line: name: level | level)" value={f.factors} onChange={set("factors")} autoComplete="off" multiline={3} error={errorFor(errors, "factors")} />
        )}
        <FormLayout.Group condensed>
          <TextField label="Conversion events" value={f.conversions} onChange={set("conversions")} autoComplete="off" helpText="comma-separated; the first is the primary metric" error={errorFor(errors, "conversion_events")} />
          <TextField label="Coverage" value={f.coverage} onChange={set("coverage")} autoComplete="off" helpText="share of users in the experiment (default 1)" error={errorFor(errors, "coverage")} />
        </FormLayout.Group>
        <Button submit variant="primary" loading={busy}>
          Create experiment
        </Button>
      </FormLayout>
    </Form>
  );
}

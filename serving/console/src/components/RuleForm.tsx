// The personalization rule form: create or edit a rule. Checked before sending (id, priority, JSON
// of conditions and content, at least one channel); the server's 422 field errors are shown next
// to their fields.
import { Banner, BlockStack, Button, Checkbox, Form, FormLayout, InlineStack, TextField } from "@shopify/polaris";
import { useState } from "react";
import { ApiError, api, type FieldErrors, type Rule } from "../api";
import { checkId, errorFor, parseIntField, parseJson } from "../forms";

export const CHANNELS = ["web", "email", "mobile"] as const;
const EXAMPLE_CONDITIONS = `{"all": [{"field": "context.device", "op": "in", "value": ["ios", "android"]}]}`;

export interface RuleFormProps {
  initial?: Rule;
  onSaved: (rule: Rule) => void;
  onCancel?: () => void;
}

/** The rule the form's fields describe, or the errors that keep it from being sent. */
export function ruleFromFields(f: {
  id: string;
  name: string;
  priority: string;
  enabled: boolean;
  channels: string[];
  conditions: string;
  content: string;
  variant: string;
}): { rule?: Rule; errors: FieldErrors } {
  const errors: FieldErrors = {};
  checkId(f.id, "id", errors);
  const priority = parseIntField(f.priority, "priority", errors, -1_000_000, 1_000_000);
  if (f.channels.length === 0) errors.channels = "choose at least one channel";
  const conditions = parseJson(f.conditions, "conditions", errors, { all: [] });
  const content = parseJson(f.content, "content", errors, null);
  if (conditions !== undefined && (typeof conditions !== "object" || conditions === null || Array.isArray(conditions)))
    errors.conditions = 'an object such as {"all": [...]} or {"field": ..., "op": ..., "value": ...}';
  if (Object.keys(errors).length) return { errors };
  const rule: Rule = { id: f.id, priority, enabled: f.enabled, channels: f.channels, conditions, content };
  if (f.name.trim()) rule.name = f.name.trim();
  if (f.variant.trim()) rule.variant = f.variant.trim();
  return { rule, errors };
}

export function RuleForm({ initial, onSaved, onCancel }: RuleFormProps) {
  const editing = Boolean(initial);
  const [id, setId] = useState(initial?.id ?? "");
  const [name, setName] = useState(initial?.name ?? "");
  const [priority, setPriority] = useState(String(initial?.priority ?? 0));
  const [enabled, setEnabled] = useState(initial?.enabled ?? true);
  const [channels, setChannels] = useState<string[]>(initial?.channels ?? [...CHANNELS]);
  const [conditions, setConditions] = useState(
    initial?.conditions !== undefined ? JSON.stringify(initial.conditions, null, 1) : EXAMPLE_CONDITIONS,
  );
  const [content, setContent] = useState(
    initial?.content !== undefined && initial.content !== null ? JSON.stringify(initial.content, null, 1) : "",
  );
  const [variant, setVariant] = useState(initial?.variant ?? "");
  const [errors, setErrors] = useState<FieldErrors>({});
  const [failure, setFailure] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async () => {
    const { rule, errors: found } = ruleFromFields({ id, name, priority, enabled, channels, conditions, content, variant });
    setErrors(found);
    setFailure(null);
    if (!rule) return;
    setBusy(true);
    try {
      const saved = editing ? await api.rules.replace({ ...initial, ...rule }) : await api.rules.create(rule);
      onSaved(saved);
    } catch (exc) {
      if (exc instanceof ApiError) {
        setErrors(exc.fields);
        setFailure(`${exc.status}: ${exc.message}`);
      } else setFailure(String(exc));
    } finally {
      setBusy(false);
    }
  };

  return (
    <Form onSubmit={submit}>
      <FormLayout>
        {failure && (
          <Banner tone="critical" title="The rule was not saved">
            <p data-testid="rule-form-failure">{failure}</p>
          </Banner>
        )}
        <FormLayout.Group condensed>
          <TextField label="Rule id" value={id} onChange={setId} autoComplete="off" disabled={editing} error={errorFor(errors, "id")} />
          <TextField label="Name" value={name} onChange={setName} autoComplete="off" error={errorFor(errors, "name")} />
          <TextField label="Priority" type="number" value={priority} onChange={setPriority} autoComplete="off" helpText="higher is evaluated first" error={errorFor(errors, "priority")} />
          <TextField label="Variant" value={variant} onChange={setVariant} autoComplete="off" error={errorFor(errors, "variant")} />
        </FormLayout.Group>
        <InlineStack gap="400">
          <Checkbox label="Enabled" checked={enabled} onChange={setEnabled} />
          {CHANNELS.map((c) => (
            <Checkbox
              key={c}
              label={c}
              checked={channels.includes(c)}
              onChange={(on) => setChannels(on ? [...channels, c] : channels.filter((x) => x !== c))}
            />
          ))}
        </InlineStack>
        {errorFor(errors, "channels") && <Banner tone="critical">{errorFor(errors, "channels")}</Banner>}
        <TextField
          label="Conditions (JSON)"
          value={conditions}
          onChange={setConditions}
          multiline={4}
          autoComplete="off"
          monospaced
          helpText='fields: profile.*, segments, context.*; ops: equals, not_equals, in, not_in, gt, gte, lt, lte, contains, exists; combine with {"all": [...]}, {"any": [...]}, {"not": ...}'
          error={errorFor(errors, "conditions")}
        />
        <TextField label="Content (JSON)" value={content} onChange={setContent} multiline={2} autoComplete="off" monospaced error={errorFor(errors, "content")} />
        <BlockStack gap="200">
          <InlineStack gap="200">
            <Button submit variant="primary" loading={busy}>
              {editing ? "Save rule" : "Create rule"}
            </Button>
            {onCancel && <Button onClick={onCancel}>Cancel</Button>}
          </InlineStack>
        </BlockStack>
      </FormLayout>
    </Form>
  );
}

import { fireEvent, screen, waitFor } from "@testing-library/react";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { KEY_STORAGE } from "../api";
import { RuleForm, ruleFromFields } from "../components/RuleForm";
import { renderWithPolaris } from "./render";

function jsonResponse(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

const fields = {
  id: "fr-vip",
  name: "",
  priority: "10",
  enabled: true,
  channels: ["web"],
  conditions: '{"field": "context.device", "op": "equals", "value": "ios"}',
  content: '{"banner": "b1"}',
  variant: "",
};

describe("ruleFromFields", () => {
  it("builds the rule the API takes", () => {
    const { rule, errors } = ruleFromFields(fields);
    expect(errors).toEqual({});
    expect(rule).toEqual({
      id: "fr-vip",
      priority: 10,
      enabled: true,
      channels: ["web"],
      conditions: { field: "context.device", op: "equals", value: "ios" },
      content: { banner: "b1" },
    });
  });

  it("names every invalid field", () => {
    const { rule, errors } = ruleFromFields({ ...fields, id: "bad id!", priority: "1.5", channels: [], conditions: "{oops" });
    expect(rule).toBeUndefined();
    expect(Object.keys(errors).sort()).toEqual(["channels", "conditions", "id", "priority"]);
    expect(errors.conditions).toMatch(/not valid JSON/);
  });
});

describe("RuleForm", () => {
  let fetchMock: ReturnType<typeof vi.fn>;
  beforeEach(() => {
    window.sessionStorage.setItem(KEY_STORAGE, "ak_test.secret");
    fetchMock = vi.fn();
    vi.stubGlobal("fetch", fetchMock);
  });
  afterEach(() => {
    vi.unstubAllGlobals();
    window.sessionStorage.clear();
  });

  it("does not send an invalid rule and says why", async () => {
    const onSaved = vi.fn();
    renderWithPolaris(<RuleForm onSaved={onSaved} />);
    fireEvent.change(screen.getByLabelText("Rule id"), { target: { value: "has space" } });
    fireEvent.change(screen.getByLabelText("Conditions (JSON)"), { target: { value: "{not json" } });
    fireEvent.click(screen.getByRole("button", { name: "Create rule" }));
    expect(await screen.findByText(/1-64 letters, digits/)).toBeTruthy();
    expect(screen.getByText(/not valid JSON/)).toBeTruthy();
    expect(fetchMock).not.toHaveBeenCalled();
    expect(onSaved).not.toHaveBeenCalled();
  });

  it("sends the rule with the API key and shows the server's field errors", async () => {
    fetchMock.mockResolvedValueOnce(
      jsonResponse(422, { detail: [{ loc: ["conditions", "field"], msg: "unknown field 'x'; use profile.<name>" }] }),
    );
    const onSaved = vi.fn();
    renderWithPolaris(<RuleForm onSaved={onSaved} />);
    fireEvent.change(screen.getByLabelText("Rule id"), { target: { value: "r1" } });
    fireEvent.change(screen.getByLabelText("Conditions (JSON)"), {
      target: { value: '{"field": "x", "op": "equals", "value": 1}' },
    });
    fireEvent.click(screen.getByRole("button", { name: "Create rule" }));
    await waitFor(() => expect(fetchMock).toHaveBeenCalledTimes(1));
    const [url, init] = fetchMock.mock.calls[0];
    expect(url).toBe("/v1/personalization/rules");
    expect(init.method).toBe("POST");
    expect(init.headers["X-API-Key"]).toBe("ak_test.secret");
    expect(JSON.parse(init.body)).toMatchObject({ id: "r1", conditions: { field: "x" } });
    await waitFor(() => {
      const inline = Array.from(document.querySelectorAll(".Polaris-InlineError")).map((e) => e.textContent);
      expect(inline.some((t) => t?.includes("conditions.field: unknown field 'x'"))).toBe(true);
    });
    expect(screen.getByTestId("rule-form-failure").textContent).toContain("422");
    expect(onSaved).not.toHaveBeenCalled();
  });

  it("hands the saved rule back on success", async () => {
    fetchMock.mockResolvedValueOnce(jsonResponse(201, { id: "r2", priority: 0 }));
    const onSaved = vi.fn();
    renderWithPolaris(<RuleForm onSaved={onSaved} />);
    fireEvent.change(screen.getByLabelText("Rule id"), { target: { value: "r2" } });
    fireEvent.click(screen.getByRole("button", { name: "Create rule" }));
    await waitFor(() => expect(onSaved).toHaveBeenCalledWith({ id: "r2", priority: 0 }));
  });
});

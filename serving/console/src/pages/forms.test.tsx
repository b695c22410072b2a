// The forms of the optimization and campaign pages against a fetch that answers like the API:
// nothing is sent while the form's own checks fail; a 422's field errors appear at their inputs;
// another error is shown with its message.
import { AppProvider } from "@shopify/polaris";
import en from "@shopify/polaris/locales/en.json";
import { fireEvent, render, screen, waitFor } from "@testing-library/react";
import type { ReactNode } from "react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { PerformanceView } from "./campaigns/Campaigns";
import { CampaignForm } from "./campaigns/CampaignForm";
import { fieldError } from "./forms";
import { CreateBandit } from "./optimization/Bandits";

const wrap = (ui: ReactNode) => render(<AppProvider i18n={en}>{ui}</AppProvider>);

function answer(status: number, body: unknown) {
  return vi.fn(async (_url: string, _init?: RequestInit) =>
    new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } }));
}

const typeInto = (label: string, value: string) => fireEvent.change(screen.getByLabelText(label), { target: { value } });

afterEach(() => vi.unstubAllGlobals());

describe("fieldError", () => {
  it("finds a field's error or its nested ones", () => {
    expect(fieldError({ id: "bad" }, "id")).toBe("bad");
    expect(fieldError({ "caps.per_user": "too big" }, "caps")).toBe("per_user: too big");
    expect(fieldError({}, "id")).toBeUndefined();
  });
});

describe("CreateBandit", () => {
  it("checks before sending", async () => {
    const fetch = answer(201, {});
    vi.stubGlobal("fetch", fetch);
    wrap(<CreateBandit onCreated={() => {}} />);
    typeInto("Bandit id", "no spaces allowed");
    fireEvent.click(screen.getByRole("button", { name: "Create bandit" }));
    expect(await screen.findByText(/1-64 letters/)).toBeTruthy();
    expect(screen.getByText("at least one arm")).toBeTruthy();
    expect(fetch).not.toHaveBeenCalled();
  });

  it("shows the server's 422 at the field it names, and sends the document", async () => {
    const fetch = answer(422, { detail: [{ loc: ["body", "arms"], msg: "arms: 1 to 100 distinct ids", type: "value_error" }] });
    vi.stubGlobal("fetch", fetch);
    const created = vi.fn();
    wrap(<CreateBandit onCreated={created} />);
    typeInto("Bandit id", "hero");
    typeInto("Arms", "a, b");
    fireEvent.click(screen.getByRole("button", { name: "Create bandit" }));
    expect(await screen.findByText("arms: 1 to 100 distinct ids")).toBeTruthy();
    expect(screen.getByTestId("form-error").textContent).toContain("arms");
    expect(created).not.toHaveBeenCalled();
    const [url, init] = fetch.mock.calls[0] as unknown as [string, RequestInit];
    expect(url).toBe("/v1/bandits");
    expect(JSON.parse(init.body as string)).toEqual({ id: "hero", policy: "thompson", arms: ["a", "b"], floor: 0.05 });
  });

  it("shows another error with its message, and reports a creation", async () => {
    vi.stubGlobal("fetch", answer(409, { detail: "bandit 'hero' exists" }));
    const created = vi.fn();
    wrap(<CreateBandit onCreated={created} />);
    typeInto("Bandit id", "hero");
    typeInto("Arms", "a");
    fireEvent.click(screen.getByRole("button", { name: "Create bandit" }));
    expect((await screen.findByTestId("form-error")).textContent).toBe("bandit 'hero' exists");
    vi.stubGlobal("fetch", answer(201, { id: "hero", arms: ["a"], policy: "thompson" }));
    fireEvent.click(screen.getByRole("button", { name: "Create bandit" }));
    await waitFor(() => expect(created).toHaveBeenCalledWith("hero"));
  });
});

describe("CampaignForm", () => {
  it("shows the server's template error at the template field", async () => {
    const fetch = vi.fn(async (url: string) =>
      url.startsWith("/v1/segments")
        ? new Response(JSON.stringify({ segments: [] }), { status: 200 })
        : new Response(JSON.stringify({ detail: [{ loc: ["body", "template", "subject"], msg: "invalid template: unexpected '}'" }] }),
          { status: 422 }));
    vi.stubGlobal("fetch", fetch);
    wrap(<CampaignForm onCreated={() => {}} />);
    typeInto("Campaign id", "welcome");
    typeInto("Subject", "Hi {{ user }");
    typeInto("Body", "Hello");
    fireEvent.click(screen.getByRole("button", { name: "Create draft" }));
    expect(await screen.findByText("invalid template: unexpected '}'")).toBeTruthy();
    const sent = fetch.mock.calls.find(([u]) => u === "/v1/campaigns") as unknown as [string, RequestInit];
    expect(JSON.parse(sent[1].body as string).template).toEqual({ subject: "Hi {{ user }", body: "Hello" });
  });

  it("does not send an email campaign without a subject", async () => {
    const fetch = answer(200, { segments: [] });
    vi.stubGlobal("fetch", fetch);
    wrap(<CampaignForm onCreated={() => {}} />);
    typeInto("Campaign id", "welcome");
    fireEvent.click(screen.getByRole("button", { name: "Create draft" }));
    expect(await screen.findByText("email needs a subject")).toBeTruthy();
    expect(fetch.mock.calls.filter(([u]) => String(u) === "/v1/campaigns")).toHaveLength(0);
  });
});

describe("PerformanceView", () => {
  it("shows conversion against the holdout and the lift", () => {
    wrap(<PerformanceView perf={{
      campaign_id: "c", status: "running", channel: "email", counts: { sent: 898 }, rates: { open: 0.334 },
      treated: { users: 900, conversions: 180, rate: 0.2, ci95: [0.175, 0.227], revenue: 9120.5 },
      holdout: { users: 100, conversions: 10, rate: 0.1, ci95: [0.055, 0.174], revenue: 480 },
      lift: { absolute: 0.1, ci95: [0.035, 0.165], relative: 1.0, p_value: 0.017, significant: true },
    }} />);
    const lift = screen.getByTestId("lift").textContent ?? "";
    expect(lift).toContain("10.00%");
    expect(lift).toContain("[3.50%, 16.50%]");
    expect(lift).toContain("significant");
    expect(screen.getByTestId("campaign-lift").textContent).toContain("20.0% [17.5%, 22.7%]");
  });
});

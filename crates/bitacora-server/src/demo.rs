//! `bitacora serve --demo`: a realistic month of activity in three tenants, so a newcomer
//! sees a living viewer at once. The scenarios are the seeds':
//!
//! - `acme` — a SaaS admin panel (the TypeScript users module): sign-ins and failed sign-ins
//!   (with one brute-force burst and the lockout it causes), users created, updated, banned
//!   and unbanned, deleted, role changes with before/after, a bulk role change with its
//!   summary event, password and MFA changes, and a billing service's own events.
//! - `netops` — a network inventory (the BookStack-style audit page): `auth_login`,
//!   `auth_failed`, devices created, updated, disabled with a reason and enabled again, groups,
//!   credentials in the vault, nightly configuration backups (a few failing).
//! - `tutoria` — a school application whose PostgreSQL tables are captured by triggers:
//!   `<table>.insert|update|delete` events with category `db` and source `db_trigger`, some
//!   without an actor (out-of-band changes), plus the application's own `LOGIN` and
//!   `ROLE_CHANGE` events.
//!
//! The generator is deterministic: the same anchor time gives the same events (ids
//! included). Events go through the normal append path — validated and sealed
//! ([`SealedEvent::prepare`]) with the server's ingest policy, then [`Store::append`] — in
//! time order, so the log, its Merkle tree and the checkpoints are exactly what real traffic
//! would have produced.

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};
use bitacora_core::{EventInput, IngestContext, IngestPolicy, SealedEvent, TenantName};
use bitacora_store::{AppendOutcome, Store};
use chrono::{DateTime, Datelike as _, Duration, NaiveTime, Utc, Weekday};
use serde_json::{Value, json};

/// The days of activity generated, ending at the anchor.
pub const DAYS: i64 = 30;
/// The demo's tenants.
pub const TENANTS: [&str; 3] = ["acme", "netops", "tutoria"];

/// What [`load`] stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoSummary {
    /// Events per tenant.
    pub per_tenant: BTreeMap<String, u64>,
    pub total: u64,
}

/// A small deterministic generator (SplitMix64): the demo must not change between runs or
/// with the `rand` crate's version.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    fn uuid(&mut self) -> String {
        let (a, b) = (self.next(), self.next());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | (b >> 48 & 0x3fff),
            b & 0xffff_ffff_ffff
        )
    }
}

#[derive(Clone, Copy)]
struct Person {
    id: &'static str,
    name: &'static str,
    email: &'static str,
}

const ACME_ADMINS: [Person; 3] = [
    Person {
        id: "admin_789",
        name: "Admin User",
        email: "admin@acme.example",
    },
    Person {
        id: "u_102",
        name: "Lucía Fernández",
        email: "lucia.fernandez@acme.example",
    },
    Person {
        id: "u_117",
        name: "Marco Rossi",
        email: "marco.rossi@acme.example",
    },
];

const ACME_USERS: [Person; 20] = [
    Person {
        id: "user_456",
        name: "Juan Pérez",
        email: "juan.perez@acme.example",
    },
    Person {
        id: "user_457",
        name: "María González",
        email: "maria.gonzalez@acme.example",
    },
    Person {
        id: "user_458",
        name: "Carlos Ramírez",
        email: "carlos.ramirez@acme.example",
    },
    Person {
        id: "user_459",
        name: "Ana Torres",
        email: "ana.torres@acme.example",
    },
    Person {
        id: "user_460",
        name: "Luis Herrera",
        email: "luis.herrera@acme.example",
    },
    Person {
        id: "user_461",
        name: "Sofía Castro",
        email: "sofia.castro@acme.example",
    },
    Person {
        id: "user_462",
        name: "Diego Morales",
        email: "diego.morales@acme.example",
    },
    Person {
        id: "user_463",
        name: "Valentina Rojas",
        email: "valentina.rojas@acme.example",
    },
    Person {
        id: "user_464",
        name: "Andrés Vargas",
        email: "andres.vargas@acme.example",
    },
    Person {
        id: "user_465",
        name: "Camila Ortiz",
        email: "camila.ortiz@acme.example",
    },
    Person {
        id: "user_466",
        name: "Javier Mendoza",
        email: "javier.mendoza@acme.example",
    },
    Person {
        id: "user_467",
        name: "Isabella Navarro",
        email: "isabella.navarro@acme.example",
    },
    Person {
        id: "user_468",
        name: "Mateo Silva",
        email: "mateo.silva@acme.example",
    },
    Person {
        id: "user_469",
        name: "Emma Wilson",
        email: "emma.wilson@acme.example",
    },
    Person {
        id: "user_470",
        name: "Noah Becker",
        email: "noah.becker@acme.example",
    },
    Person {
        id: "user_471",
        name: "Aiko Tanaka",
        email: "aiko.tanaka@acme.example",
    },
    Person {
        id: "user_472",
        name: "Olivia Martin",
        email: "olivia.martin@acme.example",
    },
    Person {
        id: "user_473",
        name: "Priya Nair",
        email: "priya.nair@acme.example",
    },
    Person {
        id: "user_474",
        name: "Tomás Aguilar",
        email: "tomas.aguilar@acme.example",
    },
    Person {
        id: "user_475",
        name: "Daniela Flores",
        email: "daniela.flores@acme.example",
    },
];

const NETOPS_STAFF: [Person; 4] = [
    Person {
        id: "1",
        name: "admin",
        email: "admin@netops.example",
    },
    Person {
        id: "4",
        name: "jrodriguez",
        email: "j.rodriguez@netops.example",
    },
    Person {
        id: "7",
        name: "mlopez",
        email: "m.lopez@netops.example",
    },
    Person {
        id: "9",
        name: "kchen",
        email: "k.chen@netops.example",
    },
];

const TUTORIA_STAFF: [Person; 5] = [
    Person {
        id: "1",
        name: "Dr. Nexo",
        email: "nexo@tutoria.example",
    },
    Person {
        id: "8",
        name: "Prof. Elena Ruiz",
        email: "elena.ruiz@tutoria.example",
    },
    Person {
        id: "15",
        name: "Prof. Hugo Paredes",
        email: "hugo.paredes@tutoria.example",
    },
    Person {
        id: "23",
        name: "Coord. Sara Molina",
        email: "sara.molina@tutoria.example",
    },
    Person {
        id: "42",
        name: "Prof. Raúl Ibarra",
        email: "raul.ibarra@tutoria.example",
    },
];

const DEVICES: [(&str, &str); 10] = [
    ("SW-CORE-01", "Switch Core Principal"),
    ("SW-CORE-02", "Switch Core Respaldo"),
    ("RTR-EDGE-01", "Router de borde Norte"),
    ("RTR-EDGE-02", "Router de borde Sur"),
    ("FW-DMZ-01", "Firewall DMZ"),
    ("AP-PISO3-07", "Access point piso 3"),
    ("AP-PISO5-02", "Access point piso 5"),
    ("SW-ACC-14", "Switch de acceso 14"),
    ("SW-ACC-21", "Switch de acceso 21"),
    ("LB-WEB-01", "Balanceador web"),
];

const DISABLE_REASONS: [&str; 4] = [
    "Equipo en mantenimiento",
    "Reemplazo por falla de fuente de poder",
    "Fin de vida útil del equipo",
    "Ventana de cambio CHG-2291",
];

const STUDENTS: [&str; 12] = [
    "Mateo Quispe",
    "Valeria Soto",
    "Thiago Rivas",
    "Camila Paz",
    "Lucas Medina",
    "Renata Cruz",
    "Emiliano Vega",
    "Martina León",
    "Benjamín Rey",
    "Antonella Ríos",
    "Santiago Gil",
    "Regina Luna",
];

const AGENTS: [&str; 5] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36",
];

fn office_ip(rng: &mut Rng) -> String {
    format!("192.168.1.{}", 100 + rng.below(40))
}

fn remote_ip(rng: &mut Rng) -> String {
    if rng.chance(50) {
        format!("10.8.0.{}", 2 + rng.below(200))
    } else {
        format!("172.16.{}.{}", rng.below(8), 2 + rng.below(250))
    }
}

fn actor(p: &Person) -> Value {
    json!({"id": p.id, "name": p.name, "email": p.email, "type": "user"})
}

/// `g.push(at, event)` with both arguments evaluated first (they draw from `g`'s generator).
macro_rules! emit {
    ($g:expr, $at:expr, $event:expr) => {{
        let at = $at;
        let event = $event;
        $g.push(at, event);
    }};
}

/// Collects one tenant's events.
struct Gen<'a> {
    tenant: &'static str,
    rng: &'a mut Rng,
    out: Vec<(DateTime<Utc>, Value)>,
    anchor: DateTime<Utc>,
}

impl Gen<'_> {
    fn push(&mut self, at: DateTime<Utc>, mut event: Value) {
        if at > self.anchor {
            return;
        }
        let id = self.rng.uuid();
        if let Some(obj) = event.as_object_mut() {
            obj.insert("id".into(), json!(id));
            obj.insert("tenant".into(), json!(self.tenant));
            obj.insert(
                "occurred_at".into(),
                json!(bitacora_core::event::timestamp::format(&at)),
            );
            if let Some(ctx) = obj.get_mut("context").and_then(Value::as_object_mut)
                && !ctx.contains_key("request_id")
            {
                ctx.insert(
                    "request_id".into(),
                    json!(format!("req-{:012x}", self.rng.next() >> 16)),
                );
            }
        }
        self.out.push((at, event));
    }

    /// A time during working hours (13:00–23:00 UTC: 08:00–18:00 in the Americas) of `day`.
    fn work_time(&mut self, day: DateTime<Utc>) -> DateTime<Utc> {
        day + Duration::seconds(13 * 3600 + self.rng.below(10 * 3600) as i64)
            + Duration::milliseconds(self.rng.below(1000) as i64)
    }

    fn any_time(&mut self, day: DateTime<Utc>) -> DateTime<Utc> {
        day + Duration::seconds(self.rng.below(86_400) as i64)
            + Duration::milliseconds(self.rng.below(1000) as i64)
    }
}

fn is_weekend(day: DateTime<Utc>) -> bool {
    matches!(day.weekday(), Weekday::Sat | Weekday::Sun)
}

fn acme(g: &mut Gen<'_>, days: &[DateTime<Utc>]) {
    let mut banned: Vec<usize> = Vec::new();
    let mut roles: Vec<&str> = vec!["user"; ACME_USERS.len()];
    for (i, r) in roles.iter_mut().enumerate() {
        if i % 7 == 3 {
            *r = "editor";
        }
    }
    let burst_day = days.len().saturating_sub(9);
    // The bulk change happens on a working day, a few days before the end.
    let bulk_day = (0..days.len().saturating_sub(4))
        .rev()
        .find(|d| !is_weekend(days[*d]))
        .unwrap_or(0);
    for (d, &day) in days.iter().enumerate() {
        let weekend = is_weekend(day);
        // Sign-ins: most people once or twice a working day.
        let people: Vec<Person> = ACME_ADMINS
            .iter()
            .chain(ACME_USERS.iter())
            .copied()
            .collect();
        for p in &people {
            if g.rng.chance(if weekend { 12 } else { 85 }) {
                let at = g.work_time(day);
                let remote = g.rng.chance(30);
                let ip = if remote {
                    remote_ip(g.rng)
                } else {
                    office_ip(g.rng)
                };
                let ua = *g.rng.pick(&AGENTS);
                if g.rng.chance(6) {
                    emit!(
                        g,
                        at - Duration::seconds(40),
                        json!({
                            "action": "user.login_failed", "category": "auth", "severity": "medium",
                            "outcome": "failure", "actor": actor(p),
                            "description": format!("Intento de inicio de sesión fallido para {}", p.email),
                            "context": {"ip": ip, "user_agent": ua, "source": "web"},
                            "metadata": {"reason": "invalid_password"}
                        })
                    );
                }
                emit!(
                    g,
                    at,
                    json!({
                        "action": "user.login", "category": "auth", "severity": "low", "actor": actor(p),
                        "description": format!("{} inició sesión", p.name),
                        "context": {"ip": ip, "user_agent": ua, "source": "web"},
                        "metadata": {"mfa": g.rng.chance(70), "method": "password"}
                    })
                );
                if g.rng.chance(55) {
                    let out = at + Duration::minutes(30 + g.rng.below(400) as i64);
                    emit!(
                        g,
                        out,
                        json!({
                            "action": "user.logout", "category": "auth", "severity": "low", "actor": actor(p),
                            "context": {"ip": ip, "user_agent": ua, "source": "web"}
                        })
                    );
                }
            }
        }
        // A brute-force burst against the admin account, from a documentation-range address.
        if d == burst_day {
            let start = day + Duration::hours(3) + Duration::minutes(12);
            for k in 0..38 {
                let at = start + Duration::seconds(k * 14 + g.rng.below(9) as i64);
                emit!(
                    g,
                    at,
                    json!({
                        "action": "user.login_failed", "category": "auth", "severity": "medium",
                        "outcome": "failure",
                        "actor": {"name": "admin@acme.example", "email": "admin@acme.example", "type": "anonymous"},
                        "description": "Intento de inicio de sesión fallido para admin@acme.example",
                        "context": {"ip": "203.0.113.77", "user_agent": "python-requests/2.31", "source": "web"},
                        "metadata": {"reason": "invalid_password", "attempt": k + 1}
                    })
                );
            }
            emit!(
                g,
                start + Duration::seconds(38 * 14 + 5),
                json!({
                    "action": "user.lockout", "category": "auth", "severity": "high",
                    "actor": {"id": "system", "name": "Protección de cuentas", "type": "system"},
                    "target": {"type": "user", "id": "admin_789", "name": "Admin User"},
                    "description": "Cuenta bloqueada 30 minutos tras 38 intentos fallidos desde 203.0.113.77",
                    "context": {"ip": "203.0.113.77", "source": "rate_limiter"},
                    "metadata": {"failed_attempts": 38, "window_minutes": 10, "lock_minutes": 30}
                })
            );
        }
        if weekend {
            continue;
        }
        let admin = *g.rng.pick(&ACME_ADMINS);
        let admin_ip = office_ip(g.rng);
        // New users now and then.
        if g.rng.chance(35) {
            let n = 500 + d;
            let name = format!(
                "{} {}",
                g.rng.pick(&[
                    "Laura", "Pedro", "Elena", "Hugo", "Marta", "Iván", "Nora", "Raúl"
                ]),
                g.rng
                    .pick(&["Salas", "Campos", "Fuentes", "Peña", "Cortés", "Ibáñez"])
            );
            let email = format!("usuario{n}@acme.example");
            let role = *g.rng.pick(&["user", "user", "editor", "viewer"]);
            emit!(
                g,
                g.work_time(day),
                json!({
                    "action": "user.create", "category": "users", "severity": "medium", "actor": actor(&admin),
                    "target": {"type": "user", "id": format!("user_{n}"), "name": name},
                    "changes": [{"field": "email", "label": "Email", "new": email}, {"field": "role", "label": "Rol del Usuario", "new": role}],
                    "description": format!("Usuario {name} creado con rol {role}"),
                    "context": {"ip": admin_ip, "source": "admin_panel"},
                    "metadata": {"email": email, "role": role, "createdBy": admin.id, "source": "admin_panel"}
                })
            );
        }
        // Profile updates.
        for _ in 0..g.rng.below(4) {
            let i = g.rng.below(ACME_USERS.len() as u64) as usize;
            let u = ACME_USERS[i];
            let (field, label, old, new) = match g.rng.below(3) {
                0 => (
                    "name",
                    "Nombre",
                    u.name.to_owned(),
                    format!("{} ", u.name).trim_end().to_owned() + " (Ventas)",
                ),
                1 => (
                    "email",
                    "Email",
                    u.email.to_owned(),
                    u.email.replace("@acme.example", "@acme-corp.example"),
                ),
                _ => (
                    "phone",
                    "Teléfono",
                    format!("+57 300 {:07}", g.rng.below(9_999_999)),
                    format!("+57 310 {:07}", g.rng.below(9_999_999)),
                ),
            };
            emit!(
                g,
                g.work_time(day),
                json!({
                    "action": "user.update", "category": "users", "severity": "medium", "actor": actor(&admin),
                    "target": {"type": "user", "id": u.id, "name": u.name},
                    "changes": [{"field": field, "label": label, "old": old, "new": new}],
                    "description": format!("Usuario {} actualizado", u.name),
                    "context": {"ip": admin_ip, "source": "admin_panel"},
                    "metadata": {"updatedBy": admin.id, "source": "admin_panel"}
                })
            );
        }
        // Role changes, critical, with before and after.
        if g.rng.chance(30) {
            let i = g.rng.below(ACME_USERS.len() as u64) as usize;
            let u = ACME_USERS[i];
            let old = roles[i];
            let new = if old == "user" {
                "editor"
            } else if old == "editor" {
                "admin"
            } else {
                "user"
            };
            roles[i] = new;
            emit!(
                g,
                g.work_time(day),
                json!({
                    "action": "user.role_change", "category": "users", "severity": "critical", "actor": actor(&admin),
                    "target": {"type": "user", "id": u.id, "name": u.name},
                    "changes": [{"field": "role", "label": "Rol del Usuario", "old": old, "new": new}],
                    "description": format!("Rol cambiado de {old} a {new}"),
                    "context": {"ip": admin_ip, "user_agent": AGENTS[0], "source": "admin_panel"},
                    "metadata": {"changedBy": admin.id, "previousRole": old, "newRole": new, "source": "admin_panel"}
                })
            );
        }
        // Bans and unbans.
        if g.rng.chance(35) {
            let unban = !banned.is_empty() && g.rng.chance(50);
            let i = if unban {
                banned.remove(0)
            } else {
                g.rng.below(ACME_USERS.len() as u64) as usize
            };
            let u = ACME_USERS[i];
            if unban {
                emit!(
                    g,
                    g.work_time(day),
                    json!({
                        "action": "user.unban", "category": "users", "severity": "medium", "actor": actor(&admin),
                        "target": {"type": "user", "id": u.id, "name": u.name},
                        "changes": [{"field": "banned", "label": "Bloqueado", "old": true, "new": false}, {"field": "banReason", "label": "Motivo", "old": "Spam reiterado en comentarios", "new": null}],
                        "description": format!("Usuario {} desbaneado", u.name),
                        "context": {"ip": admin_ip, "source": "admin_panel"},
                        "metadata": {"previousReason": "Spam reiterado en comentarios", "source": "admin_panel"}
                    })
                );
            } else if !banned.contains(&i) {
                banned.push(i);
                emit!(
                    g,
                    g.work_time(day),
                    json!({
                        "action": "user.ban", "category": "users", "severity": "high", "actor": actor(&admin),
                        "target": {"type": "user", "id": u.id, "name": u.name},
                        "changes": [{"field": "banned", "label": "Bloqueado", "old": false, "new": true}, {"field": "banReason", "label": "Motivo", "old": null, "new": "Spam reiterado en comentarios"}],
                        "description": format!("Usuario {} baneado: Spam reiterado en comentarios", u.name),
                        "context": {"ip": admin_ip, "source": "admin_panel"},
                        "metadata": {"reason": "Spam reiterado en comentarios", "previousStatus": "active", "source": "admin_panel"}
                    })
                );
            }
        }
        // Credentials: password changes and MFA.
        for _ in 0..g.rng.below(3) {
            let u = *g.rng.pick(&ACME_USERS);
            let mfa = g.rng.chance(30);
            emit!(
                g,
                g.work_time(day),
                json!({
                    "action": if mfa { "user.mfa_enable" } else { "user.password_change" },
                    "category": "auth", "severity": "medium", "actor": actor(&u),
                    "target": {"type": "user", "id": u.id, "name": u.name},
                    "changes": if mfa { json!([{"field": "mfa_enabled", "label": "MFA", "old": false, "new": true}]) } else { json!([{"field": "password", "label": "Contraseña", "old": "••••••", "new": "••••••"}]) },
                    "description": if mfa { format!("{} activó la verificación en dos pasos", u.name) } else { format!("{} cambió su contraseña", u.name) },
                    "context": {"ip": remote_ip(g.rng), "user_agent": *g.rng.pick(&AGENTS), "source": "account_settings"}
                })
            );
        }
        // A deletion, now and then.
        if g.rng.chance(25) {
            let n = 300 + d;
            emit!(
                g,
                g.work_time(day),
                json!({
                    "action": "user.delete", "category": "users", "severity": "critical", "actor": actor(&admin),
                    "target": {"type": "user", "id": format!("user_{n}"), "name": format!("Cuenta de prueba {n}")},
                    "description": format!("Usuario Cuenta de prueba {n} eliminado permanentemente"),
                    "context": {"ip": admin_ip, "source": "admin_panel"},
                    "metadata": {"deletedBy": admin.id, "userEmail": format!("prueba{n}@acme.example"), "userRole": "user", "source": "admin_panel", "recoverable": false}
                })
            );
        }
        // The billing service's invoices (a service actor).
        let invoices = 3 + g.rng.below(6);
        for _ in 0..invoices {
            let amount = 19 + g.rng.below(480);
            emit!(
                g,
                g.any_time(day),
                json!({
                    "action": "invoice.create", "category": "billing", "severity": "low",
                    "actor": {"id": "svc-billing", "name": "billing-service", "type": "service"},
                    "target": {"type": "invoice", "id": format!("INV-{:06}", g.rng.below(999_999))},
                    "description": format!("Factura emitida por USD {amount}.00"),
                    "context": {"ip": "10.20.0.15", "source": "billing_worker"},
                    "metadata": {"amount": amount, "currency": "USD", "plan": *g.rng.pick(&["starter", "team", "business"])}
                })
            );
        }
        // The bulk role change: one event per user and a summary event.
        if d == bulk_day {
            let at = day + Duration::hours(16) + Duration::minutes(45);
            let admin = ACME_ADMINS[0];
            let chosen = [2usize, 5, 8, 11, 14];
            let mut ids = Vec::new();
            for (k, i) in chosen.iter().enumerate() {
                let u = ACME_USERS[*i];
                let old = roles[*i];
                roles[*i] = "admin";
                ids.push(u.id);
                emit!(
                    g,
                    at + Duration::milliseconds(k as i64 * 35),
                    json!({
                        "action": "user.role_change", "category": "users", "severity": "critical", "actor": actor(&admin),
                        "target": {"type": "user", "id": u.id, "name": u.name},
                        "changes": [{"field": "role", "label": "Rol del Usuario", "old": old, "new": "admin"}],
                        "description": format!("Rol cambiado de {old} a admin"),
                        "context": {"ip": "192.168.1.100", "user_agent": AGENTS[0], "source": "admin_panel"},
                        "metadata": {"changedBy": admin.id, "previousRole": old, "newRole": "admin", "source": "admin_panel", "operationType": "bulk_update"}
                    })
                );
            }
            emit!(
                g,
                at + Duration::milliseconds(200),
                json!({
                    "action": "user.role_change", "category": "users", "severity": "critical", "actor": actor(&admin),
                    "target": {"type": "user", "id": "bulk_operation", "name": "Operación Masiva"},
                    "description": "Actualización masiva de roles: 5 usuarios cambiados a admin",
                    "context": {"ip": "192.168.1.100", "user_agent": AGENTS[0], "source": "admin_panel"},
                    "metadata": {"changedBy": admin.id, "newRole": "admin", "userCount": 5, "userIds": ids, "source": "admin_panel", "operationType": "bulk_update"}
                })
            );
        }
    }
}

fn netops(g: &mut Gen<'_>, days: &[DateTime<Utc>]) {
    let mut disabled: Vec<usize> = Vec::new();
    for (d, &day) in days.iter().enumerate() {
        let weekend = is_weekend(day);
        for p in &NETOPS_STAFF {
            if !g.rng.chance(if weekend { 15 } else { 90 }) {
                continue;
            }
            let at = g.work_time(day);
            let ip = office_ip(g.rng);
            let ua = *g.rng.pick(&AGENTS);
            if g.rng.chance(8) {
                emit!(
                    g,
                    at - Duration::seconds(25),
                    json!({
                        "action": "auth_failed", "category": "auth", "severity": "medium", "outcome": "failure",
                        "actor": {"name": p.name, "type": "anonymous"},
                        "description": format!("Intento de login fallido para {}", p.name),
                        "context": {"ip": ip, "user_agent": ua, "source": "web"}
                    })
                );
            }
            emit!(
                g,
                at,
                json!({
                    "action": "auth_login", "category": "auth", "severity": "low", "actor": actor(p),
                    "description": "Inicio de sesión exitoso",
                    "context": {"ip": ip, "user_agent": ua, "source": "web"}
                })
            );
            if g.rng.chance(60) {
                emit!(
                    g,
                    at + Duration::minutes(20 + g.rng.below(300) as i64),
                    json!({
                        "action": "auth_logout", "category": "auth", "severity": "low", "actor": actor(p),
                        "context": {"ip": ip, "user_agent": ua, "source": "web"}
                    })
                );
            }
        }
        // Password spraying from outside, a few nights.
        if d % 9 == 4 {
            let start = day + Duration::hours(2);
            for k in 0..(6 + g.rng.below(8)) {
                let user = *g
                    .rng
                    .pick(&["admin", "root", "netadmin", "backup", "jrodriguez"]);
                emit!(
                    g,
                    start + Duration::seconds(k as i64 * 31),
                    json!({
                        "action": "auth_failed", "category": "auth", "severity": "medium", "outcome": "failure",
                        "actor": {"name": user, "type": "anonymous"},
                        "description": format!("Intento de login fallido para {user}"),
                        "context": {"ip": format!("198.51.100.{}", 20 + g.rng.below(10)), "user_agent": "curl/8.5.0", "source": "web"}
                    })
                );
            }
        }
        // Nightly configuration backups by a service account.
        for (i, (id, name)) in DEVICES.iter().enumerate() {
            if disabled.contains(&i) {
                continue;
            }
            let failed = g.rng.chance(4);
            emit!(
                g,
                day + Duration::hours(6) + Duration::seconds(i as i64 * 47),
                json!({
                    "action": "backup_run", "category": "backup", "severity": if failed { "high" } else { "low" },
                    "outcome": if failed { "failure" } else { "success" },
                    "actor": {"id": "svc-backup", "name": "backup-bot", "type": "service"},
                    "target": {"type": "device", "id": id, "name": name},
                    "description": if failed { format!("Respaldo de configuración fallido para {id}: tiempo de espera SSH agotado") } else { format!("Respaldo de configuración de {id} completado") },
                    "context": {"ip": "10.0.5.10", "source": "scheduler"},
                    "metadata": if failed { json!({"error": "ssh timeout after 30s", "retries": 3}) } else { json!({"bytes": 18_000 + g.rng.below(40_000), "changed": g.rng.chance(20)}) }
                })
            );
        }
        if weekend {
            continue;
        }
        let who = *g.rng.pick(&NETOPS_STAFF[..3]);
        let ip = office_ip(g.rng);
        // Device changes.
        for _ in 0..(1 + g.rng.below(3)) {
            let i = g.rng.below(DEVICES.len() as u64) as usize;
            let (id, name) = DEVICES[i];
            if let Some(pos) = disabled.iter().position(|x| *x == i) {
                disabled.remove(pos);
                emit!(
                    g,
                    g.work_time(day),
                    json!({
                        "action": "device_enable", "category": "inventory", "severity": "medium", "actor": actor(&who),
                        "target": {"type": "device", "id": id, "name": name},
                        "changes": [{"field": "enabled", "label": "Habilitado para backup", "old": false, "new": true}],
                        "description": format!("Dispositivo {id} habilitado para backup"),
                        "context": {"ip": ip, "source": "web"}
                    })
                );
            } else if g.rng.chance(35) {
                disabled.push(i);
                let reason = *g.rng.pick(&DISABLE_REASONS);
                emit!(
                    g,
                    g.work_time(day),
                    json!({
                        "action": "device_disable", "category": "inventory", "severity": "high", "actor": actor(&who),
                        "target": {"type": "device", "id": id, "name": name},
                        "changes": [{"field": "enabled", "label": "Habilitado para backup", "old": true, "new": false}],
                        "description": format!("Dispositivo {id} deshabilitado: {reason}"),
                        "context": {"ip": ip, "source": "web"},
                        "metadata": {"reason": reason}
                    })
                );
            } else {
                let (field, label, old, new) = match g.rng.below(3) {
                    0 => ("firmware", "Firmware", json!("17.6.4"), json!("17.9.5")),
                    1 => ("location", "Ubicación", json!("Rack A3"), json!("Rack B1")),
                    _ => (
                        "mgmt_ip",
                        "IP de gestión",
                        json!(format!("10.1.0.{}", 10 + i)),
                        json!(format!("10.1.1.{}", 10 + i)),
                    ),
                };
                emit!(
                    g,
                    g.work_time(day),
                    json!({
                        "action": "device_update", "category": "inventory", "severity": "medium", "actor": actor(&who),
                        "target": {"type": "device", "id": id, "name": name},
                        "changes": [{"field": field, "label": label, "old": old, "new": new}],
                        "description": format!("Dispositivo {id} modificado"),
                        "context": {"ip": ip, "source": "web"}
                    })
                );
            }
        }
        if g.rng.chance(15) {
            let n = 40 + d;
            emit!(
                g,
                g.work_time(day),
                json!({
                    "action": "device_create", "category": "inventory", "severity": "medium", "actor": actor(&who),
                    "target": {"type": "device", "id": format!("SW-ACC-{n}"), "name": format!("Switch de acceso {n}")},
                    "changes": [{"field": "model", "label": "Modelo", "new": "C9200L-48P"}, {"field": "group", "label": "Grupo", "new": "Acceso"}],
                    "description": format!("Dispositivo SW-ACC-{n} creado"),
                    "context": {"ip": ip, "source": "web"}
                })
            );
        }
        if g.rng.chance(10) {
            emit!(
                g,
                g.work_time(day),
                json!({
                    "action": "group_update", "category": "inventory", "severity": "low", "actor": actor(&who),
                    "target": {"type": "group", "id": "core", "name": "Núcleo"},
                    "changes": [{"field": "backup_window", "label": "Ventana de backup", "old": "02:00-03:00", "new": "06:00-07:00"}],
                    "description": "Grupo Núcleo modificado",
                    "context": {"ip": ip, "source": "web"}
                })
            );
        }
        // The vault: credentials, high severity, values never recorded.
        if g.rng.chance(30) {
            let (action, desc) = *g.rng.pick(&[
                ("credential_update", "Credencial modificada"),
                ("credential_update", "Credencial rotada"),
                ("credential_create", "Credencial creada"),
                ("credential_delete", "Credencial eliminada"),
            ]);
            let cred = *g
                .rng
                .pick(&["ssh-core", "snmp-v3-ro", "tacacs-admin", "api-meraki"]);
            let changes = match action {
                "credential_update" => {
                    json!([{"field": "secret_version", "label": "Versión del secreto", "old": 3 + d / 10, "new": 4 + d / 10}])
                }
                "credential_create" => {
                    json!([{"field": "username", "label": "Usuario", "new": "netbackup"}])
                }
                _ => json!([]),
            };
            emit!(
                g,
                g.work_time(day),
                json!({
                    "action": action, "category": "vault", "severity": "high", "actor": actor(&who),
                    "target": {"type": "credential", "id": cred, "name": cred},
                    "changes": changes,
                    "description": format!("{desc}: {cred}"),
                    "context": {"ip": ip, "source": "web"},
                    "metadata": {"vault": "network", "masked": true}
                })
            );
        }
    }
}

fn tutoria(g: &mut Gen<'_>, days: &[DateTime<Utc>]) {
    let mut grades: Vec<u64> = (0..STUDENTS.len() as u64).map(|i| 3 + i % 4).collect();
    let mut levels: Vec<u64> = (0..STUDENTS.len() as u64).map(|i| 1 + i % 5).collect();
    let mut points: Vec<u64> = vec![100; STUDENTS.len()];
    for (d, &day) in days.iter().enumerate() {
        let weekend = is_weekend(day);
        for p in &TUTORIA_STAFF {
            if !g.rng.chance(if weekend { 10 } else { 80 }) {
                continue;
            }
            let at = g.work_time(day);
            let ip = if g.rng.chance(70) {
                office_ip(g.rng)
            } else {
                remote_ip(g.rng)
            };
            if g.rng.chance(5) {
                emit!(
                    g,
                    at - Duration::seconds(30),
                    json!({
                        "action": "LOGIN_FAILED", "category": "auth", "severity": "medium", "outcome": "failure",
                        "actor": {"name": p.email, "email": p.email, "type": "anonymous"},
                        "context": {"ip": ip, "user_agent": *g.rng.pick(&AGENTS), "source": "api"}
                    })
                );
            }
            emit!(
                g,
                at,
                json!({
                    "action": "LOGIN", "category": "auth", "severity": "low", "actor": actor(p),
                    "description": "Usuario inició sesión",
                    "context": {"ip": ip, "user_agent": *g.rng.pick(&AGENTS), "source": "api"}
                })
            );
        }
        let students_today = if weekend { 2 } else { 14 + g.rng.below(10) };
        for _ in 0..students_today {
            let s = g.rng.below(STUDENTS.len() as u64) as usize;
            let teacher = *g.rng.pick(&TUTORIA_STAFF[1..]);
            let at = g.work_time(day);
            let ip = office_ip(g.rng);
            let context = json!({"ip": ip, "request_id": format!("r-{:08x}", g.rng.next() >> 32), "source": "db_trigger"});
            match g.rng.below(10) {
                0..=3 => {
                    let old = points[s];
                    let new = old + 5 + g.rng.below(20);
                    points[s] = new;
                    emit!(
                        g,
                        at,
                        json!({
                            "action": "historial_puntos.insert", "category": "db", "severity": "low",
                            "actor": {"id": teacher.id, "name": teacher.name, "type": "user"},
                            "target": {"type": "historial_puntos", "id": format!("{}", 9000 + d * 100 + s)},
                            "changes": [{"field": "estudiante_id", "new": 100 + s}, {"field": "puntos", "new": new - old}, {"field": "motivo", "new": "Lectura completada"}],
                            "context": context
                        })
                    );
                }
                4..=6 => {
                    let old = g.rng.below(60) + 40;
                    emit!(
                        g,
                        at,
                        json!({
                            "action": "evaluacion_lectura.insert", "category": "db", "severity": "low",
                            "actor": {"id": teacher.id, "name": teacher.name, "type": "user"},
                            "target": {"type": "evaluacion_lectura", "id": format!("{}", 5000 + d * 50 + s)},
                            "changes": [{"field": "estudiante_id", "new": 100 + s}, {"field": "puntaje", "new": old}, {"field": "nivel", "new": levels[s]}],
                            "context": context
                        })
                    );
                }
                7 | 8 => {
                    let old = levels[s];
                    levels[s] = (old + 1).min(8);
                    emit!(
                        g,
                        at,
                        json!({
                            "action": "estudiante.update", "category": "db", "severity": "low",
                            "actor": {"id": teacher.id, "name": teacher.name, "type": "user"},
                            "target": {"type": "estudiante", "id": format!("{}", 100 + s)},
                            "changes": [{"field": "nivel_lectura", "old": old, "new": levels[s]}],
                            "context": context
                        })
                    );
                }
                _ => {
                    let old = grades[s];
                    grades[s] = old + 1;
                    emit!(
                        g,
                        at,
                        json!({
                            "action": "estudiante.update", "category": "db", "severity": "medium",
                            "actor": {"id": teacher.id, "name": teacher.name, "type": "user"},
                            "target": {"type": "estudiante", "id": format!("{}", 100 + s)},
                            "changes": [{"field": "grado", "old": old, "new": old + 1}, {"field": "seccion", "old": "A", "new": "B"}],
                            "context": context
                        })
                    );
                }
            }
        }
        // Out-of-band changes: a nightly job that writes without setting the context, so the
        // trigger records no actor (the seeds' "usuario_id always NULL" problem, made visible).
        if d % 3 == 0 {
            for k in 0..(2 + g.rng.below(4)) {
                let s = g.rng.below(STUDENTS.len() as u64) as usize;
                emit!(
                    g,
                    day + Duration::hours(4) + Duration::seconds(k as i64 * 3),
                    json!({
                        "action": "mision_diaria.update", "category": "db", "severity": "low",
                        "target": {"type": "mision_diaria", "id": format!("{}", 700 + s)},
                        "changes": [{"field": "completada", "old": true, "new": false}, {"field": "fecha", "old": (day - Duration::days(1)).format("%Y-%m-%d").to_string(), "new": day.format("%Y-%m-%d").to_string()}],
                        "context": {"source": "db_trigger"}
                    })
                );
            }
        }
        if weekend {
            continue;
        }
        if g.rng.chance(25) {
            let teacher = *g.rng.pick(&TUTORIA_STAFF[1..]);
            let title = *g.rng.pick(&[
                "El principito",
                "Cuentos de la selva",
                "Platero y yo",
                "La vuelta al mundo en 80 días",
                "Fábulas de Esopo",
            ]);
            let n = 300 + d;
            emit!(
                g,
                g.work_time(day),
                json!({
                    "action": "contenido_lectura.insert", "category": "db", "severity": "low",
                    "actor": {"id": teacher.id, "name": teacher.name, "type": "user"},
                    "target": {"type": "contenido_lectura", "id": format!("{n}")},
                    "changes": [{"field": "titulo", "new": title}, {"field": "nivel", "new": 1 + g.rng.below(6)}, {"field": "publicado", "new": false}],
                    "context": {"ip": office_ip(g.rng), "source": "db_trigger"}
                })
            );
            if g.rng.chance(60) {
                emit!(
                    g,
                    g.work_time(day) + Duration::hours(2),
                    json!({
                        "action": "contenido_lectura.update", "category": "db", "severity": "low",
                        "actor": {"id": "23", "name": "Coord. Sara Molina", "type": "user"},
                        "target": {"type": "contenido_lectura", "id": format!("{n}")},
                        "changes": [{"field": "publicado", "old": false, "new": true}],
                        "context": {"ip": office_ip(g.rng), "source": "db_trigger"}
                    })
                );
            }
        }
        if d == 11 || d == 23 {
            let n = 40 + d;
            emit!(
                g,
                g.work_time(day),
                json!({
                    "action": "docente.delete", "category": "db", "severity": "high",
                    "actor": {"id": "1", "name": "Dr. Nexo", "type": "user"},
                    "target": {"type": "docente", "id": format!("{n}")},
                    "changes": [{"field": "nombre", "old": "Prof. Invitado"}, {"field": "email", "old": format!("invitado{n}@tutoria.example")}, {"field": "activo", "old": false}],
                    "context": {"ip": "192.168.1.100", "source": "db_trigger"},
                    "metadata": {"before": {"id": n, "nombre": "Prof. Invitado", "email": format!("invitado{n}@tutoria.example"), "activo": false}}
                })
            );
        }
        if d == 7 || d == 19 {
            let p = TUTORIA_STAFF[(d % 4) + 1];
            let (old, new) = if d == 7 {
                ("Viewer", "Admin")
            } else {
                ("Docente", "Coordinador")
            };
            emit!(
                g,
                g.work_time(day),
                json!({
                    "action": "ROLE_CHANGE", "severity": "critical",
                    "actor": {"id": "1", "name": "Dr. Nexo", "type": "user"},
                    "target": {"type": "usuario", "id": p.id, "name": p.name},
                    "changes": [{"field": "roles", "label": "Roles", "old": [old], "new": [new]}],
                    "description": format!("Rol de {} cambiado de {old} a {new}", p.name),
                    "context": {"ip": "192.168.1.100", "source": "admin_api"},
                    "metadata": {"previous_roles": [old], "new_role_requested": new, "reason": "Solicitud administrativa manual"}
                })
            );
        }
    }
}

/// The demo's events, oldest first: [`DAYS`] days ending at `anchor` (nothing after it).
pub fn generate(anchor: DateTime<Utc>) -> Vec<Value> {
    let first = (anchor.date_naive() - Duration::days(DAYS - 1))
        .and_time(NaiveTime::MIN)
        .and_utc();
    let days: Vec<DateTime<Utc>> = (0..DAYS).map(|i| first + Duration::days(i)).collect();
    let mut rng = Rng(0x6269_7463_6163_6f72); // "bitacor"
    let mut all = Vec::new();
    type Scenario = fn(&mut Gen<'_>, &[DateTime<Utc>]);
    let scenarios: [(&'static str, Scenario); 3] =
        [("acme", acme), ("netops", netops), ("tutoria", tutoria)];
    for (tenant, scenario) in scenarios {
        let mut g = Gen {
            tenant,
            rng: &mut rng,
            out: Vec::new(),
            anchor,
        };
        scenario(&mut g, &days);
        // Stable sort: equal times keep their generation order.
        g.out.sort_by_key(|(at, _)| *at);
        all.extend(g.out.into_iter().map(|(_, e)| e));
    }
    all
}

/// Loads the demo into an empty store through the normal append path; refuses a store that
/// holds any event.
pub async fn load(
    store: &dyn Store,
    policy: &IngestPolicy,
    anchor: DateTime<Utc>,
) -> anyhow::Result<DemoSummary> {
    for tenant in store.tenants().await? {
        if store.log_size(&tenant).await? > 0 {
            bail!(
                "--demo loads sample data only into an empty store, and this one already holds \
                 events (tenant `{tenant}`): use a new data folder, e.g. `bitacora serve --demo \
                 --data ./bitacora-demo`"
            );
        }
    }
    let mut summary = DemoSummary {
        per_tenant: BTreeMap::new(),
        total: 0,
    };
    let mut batch = Vec::with_capacity(1000);
    let events = generate(anchor);
    for (i, value) in events.iter().enumerate() {
        let bytes = serde_json::to_vec(value)?;
        let input = EventInput::from_json(&bytes)
            .map_err(|e| anyhow::anyhow!("demo event {i} is invalid: {e:?}"))?;
        let occurred = input
            .occurred_at
            .as_deref()
            .and_then(|s| bitacora_core::event::timestamp::parse(s).ok())
            .unwrap_or(anchor);
        // As if received a fraction of a second after it happened.
        let received = occurred + Duration::milliseconds(40 + (i as i64 * 37) % 600);
        let sealed = SealedEvent::prepare(
            input,
            policy,
            &IngestContext {
                pinned_tenant: None,
                received_at: received,
                client_ip: None,
                allow_reserved: false,
            },
        )
        .map_err(|e| anyhow::anyhow!("demo event {i} is invalid: {e:?}"))?;
        batch.push(sealed);
        if batch.len() == 1000 {
            append(store, std::mem::take(&mut batch), &mut summary).await?;
        }
    }
    append(store, batch, &mut summary).await?;
    Ok(summary)
}

async fn append(
    store: &dyn Store,
    batch: Vec<SealedEvent>,
    summary: &mut DemoSummary,
) -> anyhow::Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let tenants: Vec<TenantName> = batch.iter().map(|e| e.event.tenant.clone()).collect();
    let outcomes = store
        .append(batch)
        .await
        .context("storing the demo events")?;
    for (tenant, outcome) in tenants.into_iter().zip(outcomes) {
        if let AppendOutcome::Stored { .. } = outcome {
            *summary.per_tenant.entry(tenant.to_string()).or_default() += 1;
            summary.total += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anchor() -> DateTime<Utc> {
        "2026-03-18T15:30:00Z".parse().unwrap()
    }

    #[test]
    fn the_demo_is_deterministic_valid_and_covers_the_scenarios() {
        let a = generate(anchor());
        assert_eq!(a, generate(anchor()));
        assert!(a.len() > 1500, "{}", a.len());
        let policy = IngestPolicy::default();
        let mut actions = std::collections::BTreeSet::new();
        let mut tenants = std::collections::BTreeSet::new();
        let mut without_actor = 0;
        for (i, v) in a.iter().enumerate() {
            let input = EventInput::from_json(&serde_json::to_vec(v).unwrap())
                .unwrap_or_else(|e| panic!("event {i}: {e:?}: {v}"));
            let sealed = SealedEvent::prepare(
                input,
                &policy,
                &IngestContext {
                    pinned_tenant: None,
                    received_at: anchor(),
                    client_ip: None,
                    allow_reserved: false,
                },
            )
            .unwrap_or_else(|e| panic!("event {i}: {e:?}: {v}"));
            assert!(sealed.event.occurred_at <= anchor());
            assert!(sealed.event.occurred_at > anchor() - Duration::days(DAYS));
            actions.insert(sealed.event.action.clone());
            tenants.insert(sealed.event.tenant.to_string());
            without_actor += usize::from(sealed.event.actor.is_none());
        }
        assert_eq!(tenants.into_iter().collect::<Vec<_>>(), TENANTS);
        for expected in [
            "user.login",
            "user.login_failed",
            "user.role_change",
            "user.ban",
            "user.unban",
            "user.delete",
            "user.create",
            "device_disable",
            "device_create",
            "credential_update",
            "auth_failed",
            "estudiante.update",
            "historial_puntos.insert",
            "ROLE_CHANGE",
        ] {
            assert!(actions.contains(expected), "{expected} missing");
        }
        assert!(without_actor > 10, "out-of-band changes: {without_actor}");
        let bulk = a
            .iter()
            .filter(|v| v["target"]["id"] == "bulk_operation")
            .count();
        assert_eq!(bulk, 1);
    }
}

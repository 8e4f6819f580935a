// The demonstration data: two patients, a practitioner, and for each patient one
// vital-signs and one laboratory Observation performed by the practitioner.
const CATEGORY = 'http://terminology.hl7.org/CodeSystem/observation-category';

function observation(id, patient, category, loinc) {
  return {
    resourceType: 'Observation',
    id,
    status: 'final',
    category: [{ coding: [{ system: CATEGORY, code: category }] }],
    code: { coding: [{ system: 'http://loinc.org', code: loinc }] },
    subject: { reference: `Patient/${patient}` },
    performer: [{ reference: 'Practitioner/pr1' }],
  };
}

export async function seedDemo(repo) {
  const resources = [
    { resourceType: 'Patient', id: '123', name: [{ family: 'Chalmers', given: ['Peter'] }] },
    { resourceType: 'Patient', id: '456', name: [{ family: 'Baxter', given: ['Amy'] }] },
    { resourceType: 'Practitioner', id: 'pr1', name: [{ family: 'Careful', given: ['Adam'] }] },
    observation('o-123-vitals', '123', 'vital-signs', '8867-4'),
    observation('o-123-lab', '123', 'laboratory', '2345-7'),
    observation('o-456-vitals', '456', 'vital-signs', '8867-4'),
    observation('o-456-lab', '456', 'laboratory', '2345-7'),
  ];
  for (const resource of resources) {
    await repo.createResource(resource, { assignedId: true });
  }
}
